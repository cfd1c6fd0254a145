"""What ``cover-id identify --session NAME --prices FILE`` does with each answer (kept out of the command)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cover_id.prices import PriceBook
from cover_id.sessions import SessionStore


class CliCollector:
    """Adds prices to each answer and, with a session name, each found item to that session."""

    def __init__(self, index: Path, session: str | None, prices: str | Path | None) -> None:
        self.prices = PriceBook.load(prices) if prices else None
        self.store = SessionStore.for_index(index) if session else None
        self.session = self.store.open_or_create(session) if self.store and session else None
        self.added = 0

    def __call__(self, result: dict[str, Any], photo: Path) -> None:
        if self.prices is not None and "error" not in result:
            self.prices.annotate(result)
        if self.store is None or self.session is None or "error" in result:
            return
        entries = result["covers"] if result.get("multi") else [result]
        for e in entries:
            self.store.add_result(self.session["id"], {"input": result["input"], **e}, photo)
            self.added += 1

    def close(self, console: Any = None) -> None:
        if self.store is None or self.session is None:
            return
        if console is not None:
            s = self.store.get(self.session["id"])
            console.print(
                f"session '{s['name']}': {self.added} added, {len(s['items'])} item(s), {s['count']} in all",
                highlight=False,
            )
        self.store.close()
