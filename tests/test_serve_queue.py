"""The server's concurrency: one photo per core by default, a bounded queue, a clear 503 beyond it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from tests.test_serve import build_world, detail, jpeg  # noqa: E402 (after the skips: needs the server extras)


def test_full_queue_is_a_503_at_once_and_the_server_recovers(tmp_path: Path) -> None:
    from cover_id.pipeline import Identifier
    from cover_id.runtime import thread_count
    from cover_id.server import create_app, start_in_thread
    from cover_id.server.state import QUEUE_PER_WORKER

    world = build_world(tmp_path, n=6)
    ident = Identifier.from_index(world["index"], {"threads": 1})
    app = create_app(ident, world["index"], {})  # no workers given: one per usable core
    srv = start_in_thread(app)
    state = app.state.cover
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as c:
            assert c.get("/health").json()["workers"] == thread_count(0) == state.workers
            assert state.max_waiting == QUEUE_PER_WORKER * state.workers

            state.max_waiting = 0  # as if every slot of the queue were taken
            for path in ("/api/identify", "/api/search-by-image"):
                r = c.post(path, files=jpeg(world["photo"]))
                assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
                assert detail(r).startswith("server busy:") and "/" not in detail(r)

            state.max_waiting = QUEUE_PER_WORKER * state.workers
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda _: c.post("/api/identify", files=jpeg(world["photo"])), range(8)))
            assert [r.status_code for r in answers] == [200] * 8
            assert {r.json()["match"]["id"] for r in answers} == {"cover-002"}
            assert state.waiting == 0  # every job left the queue
    finally:
        srv.stop()
