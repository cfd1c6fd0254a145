"""identify: the recipe (:mod:`.recipe`) and one module per step.

=========  ==============================================================
views      one RootSIFT pass seen as the rectified cover and the whole photo
retrieve   embed, search the vector index, keypoint votes, rank fusion
verify     geometric verification of the shortlist in every view
decide     thresholds, decision policy, choice of view, the rival
multi      several covers in one photo
export     rectified crop and debug image
result     per-photo state (:class:`Photo`) and the JSON shape
=========  ==============================================================
"""

from cover_id.identify.recipe import Identifier

__all__ = ["Identifier"]
