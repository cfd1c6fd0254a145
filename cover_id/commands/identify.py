"""``cover-id identify``: which reference does each photo show?"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from rich.console import Console

T = TypeVar("T")
R = TypeVar("R")

app = typer.Typer(add_completion=False)

CSV_COLUMNS = [
    "input",
    "decision",
    "match_id",
    "match_name",
    "filename",
    "geom_score",
    "inliers",
    "cosine",
    "strategy",
    "error",
]


def expand_inputs(paths: list[Path]) -> list[tuple[Path, str | None]]:
    """Files as given; folders expanded to their images (recursively, sorted).

    Each item is ``(path, error)``: a folder with no images, or a part of one
    that cannot be read, is an error entry in its place, never the end of the batch.
    A missing or bad file is reported when it is read.
    """
    from cover_id.errors import CoverIdError
    from cover_id.imageio import display_name
    from cover_id.index.catalog import walk_images

    out: list[tuple[Path, str | None]] = []
    for p in paths:
        try:
            is_dir = p.is_dir()
        except (OSError, ValueError):
            is_dir = False  # the reader says what is wrong with it
        if not is_dir:
            out.append((p, None))
            continue
        try:
            found, skipped = walk_images(p, utf8_names=False)
        except CoverIdError as exc:
            out.append((p, str(exc)))
            continue
        if not found and not skipped:
            out.append((p, f"{display_name(p)}: a folder with no images in it"))
        out.extend((q, None) for q in found)
        out.extend((p / s.filename, f"{display_name(p / s.filename)}: {s.reason}") for s in skipped)
    return out


def printable(value: Any) -> Any:
    """The result with every string safe to print and to encode as UTF-8 (non-UTF-8 bytes of names as ``\\xNN``)."""
    from cover_id.imageio import display_name

    if isinstance(value, str):
        return display_name(value)
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value


def error_entry(name: str, message: str) -> dict[str, Any]:
    return {"input": name, "decision": "error", "confident": False, "error": message}


def identify_one(
    identifier: Any,
    src: Path,
    many: bool,
    export_crop: Path | None = None,
    export_debug: Path | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """One photo's result; any failure is its error entry (the batch goes on)."""
    from cover_id.errors import CoverIdError
    from cover_id.imageio import display_name

    name = display_name(src)
    try:
        crop = _export_path(export_crop, src, many, "crop")
        debug = _export_path(export_debug, src, many, "debug")
        return identifier.identify(src, name=name, export_crop=crop, export_debug=debug, **kwargs)
    except CoverIdError as exc:
        return error_entry(name, str(exc))
    except OSError as exc:  # an export folder that cannot be made
        return error_entry(name, f"{name}: cannot write its exports ({exc.strerror or exc})")
    except Exception as exc:  # noqa: BLE001 - a bug must cost one photo, not the batch; the message says so
        return error_entry(name, f"{name}: unexpected error while processing this photo ({type(exc).__name__}: {exc})")


def batch_workers(n_photos: int, requested: int | None = None, threads: int | None = None) -> int:
    """Photos identified at once: ``requested``, else one per thread of the budget (``--threads``,
    default: every usable core); never more than there are photos."""
    from cover_id.runtime import thread_count

    if requested is not None and requested > 0:
        return min(int(requested), max(1, n_photos))
    return max(1, min(thread_count(threads), n_photos))


def in_order(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    make_pool: "Callable[[int], Executor] | None" = None,
    lost: Callable[[T], R] | None = None,
) -> Generator[R, None, None]:
    """``map(fn, items)`` on ``workers`` threads (or the executor ``make_pool(workers)`` makes), results
    yielded in input order as soon as each is ready.

    At most ``2 * workers`` items are in flight, so memory stays bounded on a large batch and the first
    results come out at once. A process pool that breaks (a worker killed by a crash in a native library
    or by the out-of-memory killer) is replaced: the items it held are run again one at a time, and one
    that breaks a pool on its own yields ``lost(item)``; the batch goes on.
    """
    if workers <= 1 and make_pool is None:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor

    def threads(n: int) -> "Executor":
        return ThreadPoolExecutor(n, "cover-id-batch")

    def submit(item: T) -> Future[R]:
        try:
            return pool.submit(fn, item)
        except BrokenExecutor as exc:  # the pool broke before this item was handed over
            failed: Future[R] = Future()
            failed.set_exception(exc)
            return failed

    make = make_pool or threads
    pool = make(workers)
    pending: deque[tuple[T, Future[R]]] = deque()
    source = iter(items)
    try:
        while True:
            for item in source:
                pending.append((item, submit(item)))
                if len(pending) >= 2 * workers:
                    break
            if not pending:
                return
            item, job = pending.popleft()
            try:
                result = job.result()
            except BrokenExecutor:
                if lost is None:
                    raise
                suspects = [item, *(i for i, _ in pending)]
                pending.clear()
                pool.shutdown(wait=False)
                pool = make(1)
                for suspect in suspects:
                    try:
                        result = submit(suspect).result()
                    except BrokenExecutor:
                        result = lost(suspect)
                        pool.shutdown(wait=False)
                        pool = make(1)
                    yield result
                pool.shutdown(wait=True)
                pool = make(workers)
                continue
            yield result
    except BaseException:  # Ctrl-C, or the reader went away (the generator closed): stop now
        stop = getattr(pool, "terminate_workers", None)
        if stop is not None:
            stop()  # worker processes drop the photos in hand
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # threads finish the photos in hand; the rest is dropped


# ---- a batch on worker processes -------------------------------------------------------------
# Threads share one loaded index, but the pure-Python parts of a photo's work (outline grouping,
# consistency checks, many small numpy calls) hold the GIL: on 2 cores, 100 dev photos on two processes
# took x0.78 the wall time and x0.87 the CPU of two threads (median of 4, alternating). Each process opens
# the index itself (memory-mapped: the pages are shared) and loads its own encoder, so a neural encoder's
# weights would be held twice: processes are used for the weight-free local engine and for batches long
# enough to pay their start.
PROCESSES_FROM = 4  # photos per worker from which a batch runs on processes

_worker: Any = None  # in a worker process: (its Identifier, the batch's constant arguments)


def use_processes(n_photos: int, workers: int, encoder: str) -> bool:
    """Whether a batch runs on worker processes rather than threads (see :data:`PROCESSES_FROM`)."""
    return workers > 1 and encoder == "local" and n_photos >= PROCESSES_FROM * workers


def start_worker(index: str, settings: dict[str, Any], many: bool, options: dict[str, Any]) -> None:
    """Set up one batch process: the index, with its share of the threads (the Identifier sets them)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it ends the workers itself
    from cover_id.pipeline import Identifier

    global _worker
    _worker = (Identifier.from_index(Path(index), settings), many, options)


def identify_item(
    identifier: Any, item: tuple[Path, str | None], many: bool, options: dict[str, Any]
) -> dict[str, Any]:
    """One batch entry's result: its error when :func:`expand_inputs` found one, else :func:`identify_one`."""
    from cover_id.imageio import display_name

    src, problem = item
    if problem is not None:
        return error_entry(display_name(src), problem)
    return identify_one(identifier, src, many, **options)


def identify_in_worker(item: tuple[Path, str | None]) -> dict[str, Any]:
    """One batch entry's result in a worker process (:func:`start_worker`)."""
    identifier, many, options = _worker
    return identify_item(identifier, item, many, options)


def process_pool(index: Path, settings: dict[str, Any], many: bool, options: dict[str, Any]) -> Callable[[int], Any]:
    """A maker of process pools whose workers identify against ``index`` (spawned: a fork would copy
    the parent's threads and locks)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")

    class Pool(ProcessPoolExecutor):
        def terminate_workers(self) -> None:
            """Stop at once (Python 3.14's method of the same name): cancel what waits, end the workers."""
            workers = list((getattr(self, "_processes", None) or {}).values())
            self.shutdown(wait=False, cancel_futures=True)
            for process in workers:
                process.terminate()

    def make(n: int) -> ProcessPoolExecutor:
        return Pool(n, mp_context=context, initializer=start_worker, initargs=(str(index), settings, many, options))

    return make


def lost_photo(item: tuple[Path, str | None]) -> dict[str, Any]:
    from cover_id.imageio import display_name

    name = display_name(item[0])
    return error_entry(
        name, f"{name}: the process identifying this photo ended unexpectedly (crashed or ran out of memory)"
    )


def _export_path(base: Path | None, photo: Path, many: bool, suffix: str) -> Path | None:
    if base is None:
        return None
    if not many:
        return base
    base.mkdir(parents=True, exist_ok=True)
    return base / f"{photo.stem}_{suffix}.jpg"


def _print(console: "Console", r: dict[str, Any]) -> None:
    from rich.markup import escape

    r = {k: escape(v) if isinstance(v, str) else v for k, v in r.items()}  # a name like "[b].jpg" is not markup
    style = {"accept": "green", "review": "yellow", "reject": "red", "error": "red"}
    if "error" in r:
        console.print(f"[red]✗[/] {r['error']}", highlight=False, soft_wrap=True)
        return
    entries = r["covers"] if r.get("multi") else [r]
    if r.get("multi"):
        console.print(
            f"[bold]{r['input']}[/]: {r['count']} cover(s) recognised  ({r['timings_ms']['total']:.0f} ms)",
            highlight=False,
        )
    for e in entries:
        d = e["decision"]
        m = e.get("match")
        what = f"{escape(m['name'])} [dim]({escape(m['id'])}, {escape(m['filename'])})[/]" if m else "nothing"
        if d == "reject" and m:
            what = f"not in the collection [dim](closest: {escape(m['name'])})[/]"
        head = "  •" if r.get("multi") else f"[bold]{r['input']}[/]:"
        console.print(
            f"{head} [{style[d]}]{d.upper()}[/] {what}  geom {e['geom_score']:.2f}, {e['inliers']} inliers, "
            f"cos {e['cosine'] if e['cosine'] is not None else 0:.2f} via {e['strategy']}"
            + ("" if r.get("multi") else f"  ({r['timings_ms']['total']:.0f} ms)"),
            highlight=False,
            soft_wrap=True,
        )
        for a in e.get("alternatives", [])[:3] if d != "accept" else []:
            console.print(
                f"      or {escape(a['name'])} ({escape(a['id'])}): geom {a['geom_score']:.2f}, cos {a['cosine']:.2f}",
                highlight=False,
            )
        for s in e.get("also_seen") or []:  # other covers in the photo (--multi reports each in full)
            console.print(
                f"      also seen: {escape(s['name'])} ({escape(s['id'])}), {s['decision']}, geom {s['geom_score']:.2f}",
                highlight=False,
            )


@app.command()
def identify(
    photos: list[Path] = typer.Argument(..., help="Photos and/or folders of photos."),
    index: Path = typer.Option(..., "--index", "-i", help="Index folder from `cover-id index`."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines on stdout: one object per photo, in order."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Also write a CSV summary here."),
    multi: bool = typer.Option(False, "--multi", help="Report every recognised cover in each photo."),
    export_crop: Path | None = typer.Option(
        None, "--export-crop", help="Write the rectified crop (a folder for many photos)."
    ),
    export_debug: Path | None = typer.Option(
        None, "--export-debug", help="Write the quad overlay (a folder for many photos)."
    ),
    top_k: int | None = typer.Option(None, "--top-k", help="Candidates retrieved per variant (default 25)."),
    accept_score: float | None = typer.Option(None, "--accept-score", help="Geometric score needed to accept."),
    review_score: float | None = typer.Option(None, "--review-score", help="Geometric score needed for review."),
    max_side: int | None = typer.Option(None, "--max-side", help="Photos are processed at most this large (px)."),
    threads: int | None = typer.Option(
        None, "--threads", help="CPU threads in all (default: all cores), shared out between the --workers."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Photos identified at once (default: one per CPU thread; 1 for one photo); a local-engine batch of "
        "4+ photos per worker runs them in worker processes.",
    ),
    session: str | None = typer.Option(
        None, "--session", help="Add the results to this scan session (created if new; shared with `serve`)."
    ),
    prices: Path | None = typer.Option(
        None, "--prices", help="Price file (JSON keyed by id or set code): adds `price` to matches."
    ),
) -> None:
    """Find the cover in each photo, rectify it, retrieve, verify geometrically, decide."""
    import json
    import sys
    from contextlib import closing

    from rich.console import Console

    from cover_id.config import load_settings
    from cover_id.errors import CoverIdError
    from cover_id.index.store import IndexStore
    from cover_id.pipeline import Identifier
    from cover_id.progress import progress
    from cover_id.runtime import thread_count

    if workers is not None and workers < 1:
        raise CoverIdError(f"--workers must be at least 1 (got {workers})")
    settings = load_settings(
        {
            "top_k": top_k,
            "accept_score": accept_score,
            "review_score": review_score,
            "max_side": max_side,
            "threads": threads,
        }
    )
    sources = expand_inputs(photos)
    n_photos = sum(problem is None for _, problem in sources)
    n_workers = batch_workers(n_photos, workers, settings.get("threads"))
    if n_workers > 1:  # each photo gets its share of the cores: nothing oversubscribes
        settings["threads"] = max(1, thread_count(settings.get("threads")) // n_workers)
    many = len(sources) > 1
    exports: dict[str, Any] = {"export_crop": export_crop, "export_debug": export_debug, "multi": multi}
    store = IndexStore.open(index)  # a bad index is one clear error here, before any worker starts
    if use_processes(n_photos, n_workers, str(store.encoder_spec.get("name"))):
        del store
        run: Callable[[tuple[Path, str | None]], dict[str, Any]] = identify_in_worker
        make_pool: Callable[[int], Any] | None = process_pool(index, settings, many, exports)
    else:
        identifier = Identifier(store, settings)
        if n_workers > 1:
            from cover_id.server.collection import make_thread_safe

            make_thread_safe(identifier)  # per-thread detector and re-ranker

        def run(item: tuple[Path, str | None]) -> dict[str, Any]:
            return identify_item(identifier, item, many, exports)

        make_pool = None
    from cover_id.collect import CliCollector

    collect = CliCollector(index, session, prices or settings.get("prices"))
    console = Console()
    rows = []
    failures = 0
    show_bar = many and not as_json and sys.stderr.isatty()

    results = in_order(run, sources, n_workers, make_pool, lost_photo)
    with progress(len(sources), "identifying", show_bar) as advance, closing(results):
        for (src, _), r in zip(sources, results):
            r = printable(r)
            failures += "error" in r
            collect(r, src)
            if as_json:
                sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
                sys.stdout.flush()
            else:
                _print(console, r)
            rows.append(r)
            advance()
    if csv_path is not None:
        _write_csv(csv_path, rows)
    collect.close(console if not as_json else None)
    if failures:  # the batch went on; the exit code still tells
        raise typer.Exit(2 if failures == len(sources) else 1)


def _write_csv(csv_path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    from cover_id.errors import CoverIdError

    try:
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, CSV_COLUMNS)
            w.writeheader()
            for r in rows:
                for e in (r["covers"] if r.get("multi") else [r]) or [{}]:
                    m = e.get("match") or {}
                    w.writerow(
                        {
                            "input": r["input"],
                            "decision": e.get("decision", r.get("decision")),
                            "match_id": m.get("id"),
                            "match_name": m.get("name"),
                            "filename": m.get("filename"),
                            "geom_score": e.get("geom_score"),
                            "inliers": e.get("inliers"),
                            "cosine": e.get("cosine"),
                            "strategy": e.get("strategy"),
                            "error": r.get("error"),
                        }
                    )
    except OSError as exc:
        raise CoverIdError(f"cannot write {csv_path} ({exc.strerror or exc})") from None
