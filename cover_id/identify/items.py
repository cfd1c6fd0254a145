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

from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from cover_id.identify.decide import Candidates
    from cover_id.index.store import IndexStore

T = TypeVar("T")


def collapse(store: "IndexStore", variants: "dict[str, Candidates]") -> "dict[str, Candidates]":
    """Per view of the photo: the candidates with only the best-ranked view of each item kept."""
    from cover_id.identify.decide import Candidates

    if not store.has_views:
        return variants
    rows = sorted({m.ref_index for c in variants.values() for m in c.ranked})
    key = dict(zip(rows, store.item_keys(rows)))
    # best first: the first view of an item carries it
    return {
        name: Candidates(_first_of_each(ranked, [key[m.ref_index] for m in ranked]), cosines)
        for name, (ranked, cosines) in variants.items()
    }


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
    return _first_of_each(rows, store.item_keys(rows))


def _first_of_each(values: list[T], keys: list[str]) -> list[T]:
    """``values`` in order, keeping only the first one of each key."""
    seen: set[str] = set()
    out = []
    for v, k in zip(values, keys):
        if k not in seen:
            seen.add(k)
            out.append(v)
    return out
