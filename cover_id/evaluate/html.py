"""The ``cover-id verify --report`` page: one self-contained HTML file.

Plots are inline SVG drawn here; thumbnails are base64 JPEGs. No scripts,
no external files, so the page can be mailed or archived as-is.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cover_id.evaluate.probe import Probe
    from cover_id.index.store import IndexStore

COLORS = {"correct": "#2e9d4f", "wrong": "#d9452b", "absent": "#6a5acd", "margin": "#3573b9"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d232b}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde1e6;padding-bottom:4px}
.sub{color:#5b6572}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0001;min-width:150px}
.card b{display:block;font-size:24px}.card span{color:#5b6572;font-size:12px}
.level-strong{color:#2e9d4f}.level-medium{color:#c98a00}.level-weak{color:#d9452b}
table{border-collapse:collapse;background:#fff;width:100%;box-shadow:0 1px 2px #0001}
td,th{padding:6px 8px;border-bottom:1px solid #eef0f3;text-align:left;vertical-align:middle}
th{background:#f0f2f5;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
img.t{max-height:110px;max-width:110px;border-radius:3px;display:block}
.plot{background:#fff;border-radius:8px;padding:8px;box-shadow:0 1px 2px #0001;display:inline-block;margin:0 12px 12px 0}
ul.advice li{margin:3px 0}.muted{color:#8a939e}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _img(data: bytes, alt: str) -> str:
    if not data:
        return f'<span class="muted">{_e(alt)}</span>'
    return f'<img class="t" alt="{_e(alt)}" src="data:image/jpeg;base64,{base64.b64encode(data).decode()}">'


def _pct(x: Any) -> str:
    return f"{x:.1%}" if isinstance(x, (int, float)) else "–"


def histogram_svg(
    series: dict[str, list[float]],
    title: str,
    lo: float | None = None,
    hi: float | None = None,
    bins: int = 30,
    lines: dict[str, float] | None = None,
    width: int = 480,
    height: int = 220,
) -> str:
    """Overlaid histograms (one colour per series) with optional labelled vertical lines."""
    values = [v for vs in series.values() for v in vs]
    if not values:
        return f'<svg width="{width}" height="40"><text x="8" y="24" fill="#888">{_e(title)}: no data</text></svg>'
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    if hi <= lo:
        hi = lo + 1e-6
    step = (hi - lo) / bins
    counts = {}
    for name, vs in series.items():
        c = [0] * bins
        for v in vs:
            c[min(bins - 1, max(0, int((v - lo) / step)))] += 1
        counts[name] = c
    top = max(max(c) for c in counts.values()) or 1
    ml, mr, mt, mb = 40, 10, 28, 34
    pw, ph = width - ml - mr, height - mt - mb
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11" font-family="sans-serif">'
    ]
    parts.append(f'<text x="{ml}" y="16" font-size="13" font-weight="600">{_e(title)}</text>')
    parts.append(f'<line x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="#999"/>')
    for frac in (0, 0.5, 1):
        y = mt + ph - frac * ph
        parts.append(f'<text x="{ml - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#666">{round(frac * top)}</text>')
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        x = ml + pw * k / 4
        parts.append(f'<text x="{x:.1f}" y="{mt + ph + 14}" text-anchor="middle" fill="#666">{v:.2f}</text>')
    bw = pw / bins
    for name, c in counts.items():
        col = COLORS.get(name, "#555")
        for b, n in enumerate(c):
            if n:
                h = ph * n / top
                parts.append(
                    f'<rect x="{ml + b * bw + 0.5:.1f}" y="{mt + ph - h:.1f}" width="{max(bw - 1, 1):.1f}" '
                    f'height="{h:.1f}" fill="{col}" fill-opacity="0.55"><title>{_e(name)}: {n}</title></rect>'
                )
    for label, v in (lines or {}).items():
        if lo <= v <= hi:
            x = ml + pw * (v - lo) / (hi - lo)
            parts.append(
                f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + ph}" stroke="#222" stroke-dasharray="4 3"/>'
            )
            parts.append(f'<text x="{x + 3:.1f}" y="{mt + 10}" fill="#222">{_e(label)}</text>')
    lx = ml
    for name, vs in series.items():
        parts.append(
            f'<rect x="{lx}" y="{height - 12}" width="10" height="10" fill="{COLORS.get(name, "#555")}" fill-opacity="0.7"/>'
        )
        parts.append(f'<text x="{lx + 14}" y="{height - 3}">{_e(name)} ({len(vs)})</text>')
        lx += 24 + 7 * len(name) + 8 * len(str(len(vs)))
    parts.append("</svg>")
    return "".join(parts)


class _Thumbs:
    """Reference thumbnails, read once."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store
        self.cache: dict[str, bytes] = {}

    def __call__(self, ref: dict[str, Any] | None) -> str:
        if not ref:
            return '<span class="muted">–</span>'
        rid = ref["id"]
        if rid not in self.cache:
            from cover_id.errors import ImageError
            from cover_id.evaluate.photos import thumbnail
            from cover_id.imageio import read_image

            i = self.store.index_of(rid)
            try:
                self.cache[rid] = (
                    thumbnail(read_image(self.store.image_path(i), max_side=320)) if i is not None else b""
                )
            except ImageError:
                self.cache[rid] = b""
        return _img(self.cache[rid], ref["name"]) + f'<div class="muted">{_e(ref["name"])}</div>'


def _confusion_rows(items: list[tuple[dict[str, Any], bytes]], thumbs: _Thumbs) -> str:
    rows = []
    for s, qthumb in items:
        rows.append(
            "<tr>"
            f"<td>{_img(qthumb, s['input'])}<div class='muted'>{_e(Path(str(s['input'])).name)}</div></td>"
            f"<td>{thumbs(s.get('truth_ref')) if s.get('truth_ref') else '<i>not in the collection</i>'}</td>"
            f"<td>{thumbs(s.get('best_wrong_ref'))}</td>"
            f"<td>{_e(s.get('decision'))}<br><span class='muted'>{_e(s.get('reason', ''))}</span></td>"
            f"<td class='num'>{s.get('correct_geom', '–')}</td><td class='num'>{s.get('best_wrong_geom', '–')}</td>"
            f"<td class='num'>{s.get('margin_geom', '–')}</td>"
            "</tr>"
        )
    head = "<tr><th>query</th><th>true reference</th><th>best wrong match</th><th>decision</th><th>correct geom</th><th>wrong geom</th><th>margin</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def render(report: dict[str, Any], store: IndexStore, probes: dict[str, list[Probe]] | None = None) -> str:
    """The page for one ``run_verify`` report (``probes`` adds plots and thumbnails)."""
    from cover_id.evaluate.stats import failures, score_samples

    probes = probes or {}
    thumbs = _Thumbs(store)
    st = report.get("self_test", {})
    mg = report.get("margins", {})
    th = report.get("thresholds", {})
    cal = report.get("calibration")
    lines = {}
    acc = (cal or {}).get("accept_score", th.get("accept_score"))
    rev = (cal or {}).get("review_score", th.get("review_score"))
    if isinstance(acc, (int, float)):
        lines["accept"] = float(acc)
    if isinstance(rev, (int, float)):
        lines["review"] = float(rev)
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>cover-id verify</title><style>{CSS}</style></head><body><main>"
    ]
    out.append("<h1>cover-id verify</h1>")
    out.append(
        f"<div class='sub'>{_e(report['index'])} · encoder {_e(report['encoder'])}"
        f"{' + projection head' if report.get('projection') else ''} · {report['references']} references · "
        f"thresholds from {_e(th.get('source'))} · {report.get('seconds')} s</div>"
    )
    level = mg.get("guidance", {}).get("level", "unknown")
    cards = [
        (_pct(st.get("top1")), "self-test top-1 (synthetic phone photos)"),
        (_pct(st.get("accepted_correct")), "self-test accepted & correct"),
        (_pct(st.get("embedding_top1")), "self-test embedding-only top-1"),
        (
            f"{mg.get('geometric', {}).get('median', 0):+.2f}" if mg.get("geometric", {}).get("n") else "–",
            "median geometric margin",
        ),
        (f"<span class='level-{level}'>{_e(level)}</span>", "separation"),
    ]
    ph = report.get("photos")
    if ph:
        cards += [
            (_pct(ph.get("top1")), "labelled photos top-1"),
            (_pct(ph.get("false_accept_rate")), "photos false accepts"),
        ]
    out.append(
        "<div class='cards'>"
        + "".join(f"<div class='card'><b>{v}</b><span>{_e(k)}</span></div>" for v, k in cards)
        + "</div>"
    )
    out.append("<h2>What to do</h2><ul class='advice'>")
    out += [f"<li>{_e(a)}</li>" for a in mg.get("guidance", {}).get("advice", [])]
    out.append("</ul>")

    selftest = probes.get("selftest", [])
    photos = probes.get("photos", [])
    out.append("<h2>Margins: correct score − best wrong score</h2>")
    if selftest:
        gm = [p.geom(p.truth) - p.best_wrong_geom()[1] for p in selftest]
        cm = [float(p.sims[p.truth]) - p.best_wrong_cos()[1] for p in selftest]
        out.append(
            f"<div class='plot'>{histogram_svg({'margin': gm}, 'geometric margin (self-test)', -1, 1, 40, {'0': 0.0})}</div>"
        )
        out.append(
            f"<div class='plot'>{histogram_svg({'margin': cm}, 'embedding margin (self-test)', lines={'0': 0.0})}</div>"
        )
    g = mg.get("geometric", {})
    if g.get("n"):
        out.append(
            "<table><tr><th></th><th>median</th><th>5th pct</th><th>10th pct</th><th>25th pct</th><th>negative</th></tr>"
            + "".join(
                f"<tr><td>{name}</td><td class='num'>{d['median']:+.3f}</td><td class='num'>{d['p5']:+.3f}</td>"
                f"<td class='num'>{d['p10']:+.3f}</td><td class='num'>{d['p25']:+.3f}</td><td class='num'>{d['negative']:.1%}</td></tr>"
                for name, d in (("geometric", g), ("embedding", mg.get("embedding", {})))
                if d.get("n")
            )
            + "</table>"
        )

    out.append("<h2>Score distributions</h2>")
    if selftest:
        out.append(
            f"<div class='plot'>{histogram_svg(score_samples(selftest), 'geometric score, self-test', 0, 1, 40, lines)}</div>"
        )
    if photos:
        samples = {k: v for k, v in score_samples(photos).items() if v}
        out.append(
            f"<div class='plot'>{histogram_svg(samples, 'geometric score, labelled photos', 0, 1, 40, lines)}</div>"
        )

    if st.get("worst"):
        out.append("<h2>Worst confusions (self-test)</h2>")
        by_label = {p.label: p.thumb for p in selftest}
        out.append(_confusion_rows([(s, by_label.get(s["input"], b"")) for s in st["worst"]], thumbs))

    cp = report.get("confusable_pairs", {})
    for key, title in (
        ("by_geometry", "Confusable pairs: geometrically similar"),
        ("by_embedding", "Confusable pairs: closest embeddings"),
    ):
        rows = cp.get(key) or []
        if not rows:
            continue
        out.append(
            f"<h2>{title}</h2><table><tr><th>reference</th><th>looks like</th><th>cosine</th><th>geom score</th><th>inliers</th></tr>"
        )
        out += [
            f"<tr><td>{thumbs(r['a'])}</td><td>{thumbs(r['b'])}</td><td class='num'>{r['cosine']:.3f}</td>"
            f"<td class='num'>{r['geom_score']:.3f}</td><td class='num'>{r['inliers']}</td></tr>"
            for r in rows
        ]
        out.append("</table>")

    if ph:
        out.append("<h2>Labelled photos</h2><table><tr><th>measure</th><th>value</th></tr>")
        for k in (
            "n",
            "n_in_collection",
            "n_absent",
            "top1",
            "top5",
            "embedding_top1",
            "accepted_correct",
            "review",
            "rejected",
            "false_accept_rate",
            "absent_rejected",
        ):
            if k in ph:
                v = ph[k]
                out.append(f"<tr><td>{_e(k)}</td><td class='num'>{v if isinstance(v, int) else _pct(v)}</td></tr>")
        out.append("</table>")
        if photos:
            by_label = {p.label: p.thumb for p in photos}
            fails = failures(photos, store)
            if fails:
                out.append(f"<h2>Photo failures ({len(fails)})</h2>")
                out.append(_confusion_rows([(s, by_label.get(s["input"], b"")) for s in fails[:40]], thumbs))
    if cal:
        out.append("<h2>Calibration (stored in the index)</h2>")
        out.append(f"<pre>{_e(json.dumps(cal, indent=2))}</pre>")
    out.append("</main></body></html>")
    return "".join(out)


def write_report(
    path: Path, report: dict[str, Any], store: IndexStore, probes: dict[str, list[Probe]] | None = None
) -> None:
    from cover_id.errors import CoverIdError

    try:
        Path(path).write_text(render(report, store, probes), encoding="utf-8")
    except OSError as exc:
        raise CoverIdError(f"cannot write {path} ({exc.strerror})") from None
