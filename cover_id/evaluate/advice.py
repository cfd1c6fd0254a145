"""What the margins mean, in words: strong / medium / weak separation and what to do."""

from __future__ import annotations

from typing import Any


def margin_guidance(
    geom: dict[str, Any], cos: dict[str, Any], recall_at_k: float | None, encoder: str
) -> dict[str, Any]:
    """Strong / medium / weak separation, with what to do about it."""
    if not geom.get("n"):
        return {"level": "unknown", "advice": ["no self-test probes: nothing to judge"]}
    med, p10 = geom["median"], geom["p10"]
    level = "strong" if med >= 0.35 and p10 >= 0.15 else "medium" if med >= 0.2 and p10 >= 0.0 else "weak"
    advice: list[str] = []
    if level == "strong":
        advice.append("references are well separated: photos of them should be accepted reliably")
    if level in ("medium", "weak"):
        advice.append(
            "some references are hard to tell apart from their neighbours: add sharper, tightly cropped "
            "reference images (the cover only, at least 600 px)"
        )
    if recall_at_k is not None and recall_at_k < 0.95:
        advice.append(
            f"the embedding alone ranks the right reference among its candidates only {recall_at_k:.0%} of the "
            "time (keypoint votes supply the rest of the candidates); if the self-test top-1 is low too, train "
            "a projection head (`cover-id train --index INDEX --out head.npz`, then "
            "`cover-id index ... --projection head.npz`)"
            + (" or try the 'local' engine, which is built for printed covers" if encoder != "local" else "")
        )
    elif cos.get("n") and cos["median"] < 0.05:
        advice.append("embedding margins are thin: a projection head (`cover-id train`) usually widens them")
    if level == "weak":
        advice.append(
            "geometric margins are weak: the collection may hold near-duplicates (editions of the same item); "
            "check the confusable pairs and merge or relabel them, and calibrate thresholds with real photos "
            "(`cover-id verify --queries truth.csv --calibrate`)"
        )
    return {"level": level, "advice": advice}
