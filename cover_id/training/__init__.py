"""Training a projection head with supervised contrastive loss (``cover-id train``).

The encoder stays frozen. Each reference is one class; its members are the
clean reference vector plus synthetic phone-photo views. Encoding the views
is the slow part on a CPU, so every view is encoded once into a *bank*; each
training step then samples K classes x M vectors from the bank. The head is a
residual MLP whose last layer starts at zero, so training begins from the
encoder's own geometry and only bends it where views of one reference disagree.

The recipe (:func:`cover_id.training.run.train`), one module per step:

* :mod:`~cover_id.training.sources` — the references and encoder (an index, or a folder).
* :mod:`~cover_id.training.bank` — every view encoded once.
* :mod:`~cover_id.training.sampler` / :mod:`~cover_id.training.loss` — K x M batches, SupCon.
* :mod:`~cover_id.training.head` / :mod:`~cover_id.training.fit` — the head and its training loop.
* :mod:`~cover_id.training.projection` — the head file (a numpy ``.npz`` archive) applied with numpy
  at query time (no torch needed to use it).
"""

from cover_id.training.fit import TrainConfig, TrainResult
from cover_id.training.run import train

__all__ = ["TrainConfig", "TrainResult", "train"]
