"""How well does an index tell its references apart? (``cover-id verify``)

One module per step, in the order ``run_verify`` uses them:

* :mod:`~cover_id.evaluate.synth` — synthetic covers, backgrounds and photo augmentations.
* :mod:`~cover_id.evaluate.photos` — a reference turned into a synthetic phone photo; report thumbnails.
* :mod:`~cover_id.evaluate.probe` — one query through the real identify pipeline, kept for re-decision.
* :mod:`~cover_id.evaluate.selftest` — the self-test (synthetic photos of the references) and confusable pairs.
* :mod:`~cover_id.evaluate.labelled` — the ``photo,reference`` CSV and identifying its photos.
* :mod:`~cover_id.evaluate.redecide` — offline re-decision of probes under other thresholds.
* :mod:`~cover_id.evaluate.calibrate` — thresholds from labelled photos; the one function that writes the index.
* :mod:`~cover_id.evaluate.stats` / :mod:`~cover_id.evaluate.advice` — statistics, and what they mean in words.
* :mod:`~cover_id.evaluate.report` — :func:`run_verify`, the whole JSON report; :mod:`~cover_id.evaluate.html` its page.

Modules import numpy/OpenCV lazily, so importing this package is cheap.
"""
