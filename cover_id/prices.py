"""Prices: what an item of the collection is worth, from a price file or a catalog field.

A price file is JSON keyed by a reference's ``id`` or its ``set_code``::

    {"the-matrix": {"value": 12.5, "currency": "EUR"}, "LOCH-JP001": 3.2}

(a bare number has no currency). Without a file entry, a numeric catalog field
``price`` (with an optional ``currency`` field) is the price. :func:`annotate`
adds ``price`` to every match and alternative of an identify answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cover_id.errors import CoverIdError

Price = dict[str, Any]  # {"value": float, "currency": str | None, "source": "prices" | "catalog"}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _entry(key: str, raw: Any, where: str) -> Price:
    if _number(raw):
        return {"value": float(raw), "currency": None, "source": "prices"}
    if isinstance(raw, Mapping) and _number(raw.get("value")):
        cur = raw.get("currency")
        if cur is not None and not isinstance(cur, str):
            raise CoverIdError(f"{where}: currency of '{key}' must be text, got {cur!r}")
        return {"value": float(raw["value"]), "currency": cur or None, "source": "prices"}
    raise CoverIdError(f'{where}: price of \'{key}\' must be a number or {{"value": 12.5, "currency": "EUR"}}')


class PriceBook:
    """Prices keyed by reference id or set code, plus the catalog's own ``price`` field."""

    def __init__(self, entries: Mapping[str, Price] | None = None) -> None:
        self.entries: dict[str, Price] = dict(entries or {})
        self._folded = {k.casefold(): v for k, v in self.entries.items()}

    @classmethod
    def load(cls, path: Path | str | None) -> "PriceBook":
        """The price file at ``path`` (none: catalog prices only); one clear error for a bad file."""
        if path is None or str(path) == "":
            return cls()
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CoverIdError(f"price file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CoverIdError(f"price file {p.name}: cannot be read ({exc})") from None
        except json.JSONDecodeError as exc:
            raise CoverIdError(f"price file {p.name}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise CoverIdError(f'price file {p.name}: expected an object {{"id or set code": price}}')
        return cls({str(k): _entry(str(k), v, f"price file {p.name}") for k, v in data.items()})

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, record: Mapping[str, Any]) -> Price | None:
        """The price of one reference record: the file by id, then by set code, then the catalog field."""
        for key in (record.get("id"), record.get("set_code")):
            if isinstance(key, str) and key:
                hit = self.entries.get(key) or self._folded.get(key.casefold())
                if hit is not None:
                    return dict(hit)
        value = record.get("price")
        if isinstance(value, (int, float)) and _number(value):
            cur = record.get("currency")
            return {"value": float(value), "currency": cur if isinstance(cur, str) else None, "source": "catalog"}
        return None

    def annotate(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result`` (an identify answer) with ``price`` on its match and alternatives (multi: every cover).

        Only candidates that have a price get the key (a catalog's own ``price`` number becomes the
        object); an answer without prices stays exactly what ``identify --json`` prints.
        """
        entries = result.get("covers") if result.get("multi") else [result]
        for e in entries or []:
            for cand in [e.get("match"), *(e.get("alternatives") or [])]:
                if isinstance(cand, dict):
                    hit = self.lookup(cand)
                    if hit is not None:
                        cand["price"] = hit
        return result


def total(prices: list[tuple[Price | None, int]]) -> dict[str, Any]:
    """Sum of (price, count) pairs, per currency (``""``: no currency); ``priced``/``unpriced`` item counts."""
    sums: dict[str, float] = {}
    priced = unpriced = 0
    for price, count in prices:
        if price is None:
            unpriced += count
            continue
        cur = price.get("currency") or ""
        sums[cur] = round(sums.get(cur, 0.0) + float(price["value"]) * count, 2)
        priced += count
    return {"by_currency": sums, "priced": priced, "unpriced": unpriced}
