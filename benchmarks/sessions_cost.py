"""What scan sessions cost: adding an identified phone photo (thumbnail + kept photo + SQLite write),
reading a large session with its prices and total, and exporting it; the database's size per item.

Uses the real DVD phone photos (../shared/data/dvd-covers/photos); no index is needed.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from common import require_data


def main() -> None:
    from cover_id.prices import PriceBook
    from cover_id.sessions import SessionStore, export_rows, with_prices

    photos = sorted((require_data() / "photos").glob("*.jpg"))[:40]
    datas = [p.read_bytes() for p in photos]
    with tempfile.TemporaryDirectory() as tmp:
        store = SessionStore(Path(tmp) / "idx.sessions.sqlite")
        sid = store.create("bench")["id"]
        times = []
        for n, data in enumerate(datas):
            r = {
                "input": f"p{n}.jpg",
                "decision": "accept",
                "geom_score": 0.7,
                "match": {"id": f"ref-{n}", "name": f"Ref {n}", "filename": f"ref_{n}.jpg", "price": 2.5},
            }
            t = time.perf_counter()
            store.add_result(sid, r, data)
            times.append((time.perf_counter() - t) * 1000)
        again = []
        for n in range(200):  # the same items seen again: only the count changes
            r = {"input": "x.jpg", "decision": "accept", "match": {"id": f"ref-{n % 40}", "name": "x", "filename": "x"}}
            t = time.perf_counter()
            store.add_result(sid, r, datas[0])
            again.append((time.perf_counter() - t) * 1000)
        mb_photo = sum(len(d) for d in datas) / len(datas) / 1e6
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL folded into the file
        size = (Path(tmp) / "idx.sessions.sqlite").stat().st_size
        print(f"{len(datas)} phone photos ({mb_photo:.2f} MB each on average, {photos[0].parent})")
        print(
            f"add a new item (decode, thumbnail, kept photo, write): median {statistics.median(times):.1f} ms, "
            f"max {max(times):.1f} ms"
        )
        print(f"add a known item again (count + 1): median {statistics.median(again):.2f} ms")
        print(f"database: {size / 1e6 / len(datas):.3f} MB per distinct item (thumbnail + photo at most 1280 px)")
        # a large session: 5,000 distinct items without photos
        big = store.create("big")["id"]
        for n in range(5000):
            match = {"id": f"r{n}", "name": f"R{n}", "filename": "f", "price": n % 50}
            store.add_result(big, {"input": "", "decision": "accept", "match": match})
        t = time.perf_counter()
        s = with_prices(store.get(big), PriceBook())
        read = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        rows = export_rows(s)
        exp = (time.perf_counter() - t) * 1000
        print(
            f"a 5,000-item session: read with prices and total {read:.0f} ms, export rows {exp:.0f} ms "
            f"({len(rows)} rows, total {s['total']['by_currency']})"
        )
        store.close()


if __name__ == "__main__":
    main()
