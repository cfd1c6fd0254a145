"""Items with several reference images: results name the item once.

An item may have several views in the index (a folder per item, a list of images
in its catalog line, photos confirmed by the user). Before the decision each
view's candidate list keeps only the best view of every item (:func:`collapse`),
so two views of one item are never each other's rival in the margin test and
the alternatives are other items. :func:`present` turns a winning view's record
into its item's: the item's id, name, fields and primary ``filename``, plus
``item`` and ``view`` (the id of the view that matched). A collection of one image per
item passes through both unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cover_id.identify.decide import Candidates
    from cover_id.index.store import IndexStore


def collapse(store: "IndexStore", variants: "dict[str, Candidates]") -> "dict[str, Candidates]":
    """Per view of the photo: the candidates with only the best-ranked view of each item kept."""
    from cover_id.identify.decide import Candidates

    if not store.has_views:
        return variants
    rows = sorted({m.ref_index for c in variants.values() for m in c.ranked})
    key = dict(zip(rows, store.item_keys(rows)))
    out = {}
    for name, (ranked, cosines) in variants.items():
        seen: set[str] = set()
        kept = []
        for m in ranked:  # best first: the first view of an item carries it
            k = key[m.ref_index]
            if k not in seen:
                seen.add(k)
                kept.append(m)
        out[name] = Candidates(kept, cosines)
    return out


def present(store: "IndexStore", row: int) -> dict[str, Any]:
    """The catalog record a match on ``row`` is reported as: its item's, naming the view that matched."""
    record = store.records[row]
    item = record.get("item")
    if not item or item == record["id"]:
        return record
    primary = store.index_of(item)
    if primary is None:  # the primary view was deleted: the view stands for its item
        return {**record, "id": item, "item": item, "view": record["id"]}
    return {**store.records[primary], "item": item, "view": record["id"]}


def unique_items(store: "IndexStore", rows: list[int]) -> list[int]:
    """``rows`` with only the first view of each item kept (search results name an item once)."""
    if not rows or not store.has_views:
        return rows
    seen: set[str] = set()
    out = []
    for r, k in zip(rows, store.item_keys(rows)):
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out
