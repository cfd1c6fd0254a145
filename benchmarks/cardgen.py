"""Generated trading cards that behave like a real set, and synthetic photos of them.

Every card shares one frame template (border, name bar, level stars, text box,
set symbol, copyright line); the rules text comes from a handful of shared
templates, so many cards carry the same text. What tells cards apart is the
artwork (a crop of a real image from ``dvd-covers/distractors``, never a
reference) and the name. Variants keep the artwork and differ only in set
code, rarity stamp or a foil pattern over the art.

Photos put a card in a sleeve, in a hand or on a playmat, with perspective,
glare, blur, noise and JPEG compression. Everything is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

CARD_W, CARD_H = 420, 600
ART = (44, 96, 376, 392)  # x0, y0, x1, y1 of the artwork window
SYLLABLES = "dra gon mag ic ian blue eyes war rior dark knight sky fire storm lord cyber ele men tal hero neo ".split()
RULES = [
    "When this card is Normal Summoned: you can add 1 Spell from your Deck to your hand.",
    "Cannot be destroyed by battle. Once per turn: you can target 1 monster your opponent controls.",
    "If this card is sent to the GY: you can draw 1 card. You can only use this effect once per turn.",
    "Tribute this card: Special Summon 1 Level 4 or lower monster from your hand.",
    "During your Main Phase: you can discard 1 card; destroy 1 Spell or Trap on the field.",
    "A legendary creature whose power is beyond measure. Its roar shakes the land.",
]
RARITY_COLORS = {"c": (40, 40, 40), "r": (200, 200, 210), "ur": (40, 190, 240), "scr": (210, 120, 230)}
FONT = cv2.FONT_HERSHEY_DUPLEX


@dataclass(frozen=True)
class Card:
    """One printing: what is drawn on it."""

    key: str
    name: str
    art_source: str  # file name in the artwork folder
    art_seed: int
    set_code: str
    rarity: str = "c"
    foil: bool = False
    rules: int = 0
    level: int = 4
    attack: int = 1800


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


def _template() -> np.ndarray:
    """The frame every card shares (drawn once, seeded)."""
    rng = np.random.default_rng(7)
    card = np.zeros((CARD_H, CARD_W, 3), np.uint8)
    card[:] = (40, 110, 170)  # orange-brown frame
    tex = cv2.resize(rng.uniform(0, 1, (30, 21)).astype(np.float32), (CARD_W, CARD_H))
    card = np.clip(card.astype(np.float32) * (0.85 + 0.3 * tex[..., None]), 0, 255).astype(np.uint8)
    cv2.rectangle(card, (0, 0), (CARD_W - 1, CARD_H - 1), (20, 20, 20), 12)
    cv2.rectangle(card, (22, 22), (CARD_W - 22, 64), (225, 235, 240), -1)  # name bar
    cv2.rectangle(card, (22, 22), (CARD_W - 22, 64), (30, 30, 30), 2)
    cv2.circle(card, (CARD_W - 46, 43), 16, (40, 40, 200), -1)  # attribute icon
    cv2.putText(card, "DARK", (CARD_W - 60, 48), FONT, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.rectangle(card, (ART[0] - 6, ART[1] - 6), (ART[2] + 6, ART[3] + 6), (30, 30, 30), -1)
    cv2.rectangle(card, (22, 420), (CARD_W - 22, 566), (170, 215, 230), -1)  # text box
    cv2.rectangle(card, (22, 420), (CARD_W - 22, 566), (30, 30, 30), 2)
    cv2.line(card, (30, 540), (CARD_W - 30, 540), (30, 30, 30), 1)
    cv2.putText(card, "(c) 2026 CARD GAME CO.", (24, 586), FONT, 0.38, (20, 20, 20), 1, cv2.LINE_AA)
    return card


_TEMPLATE: np.ndarray | None = None


def _artwork(card: Card, art_dir: Path) -> np.ndarray:
    img = cv2.imread(str(art_dir / card.art_source), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(art_dir / card.art_source)
    rng = np.random.default_rng(card.art_seed)
    h, w = img.shape[:2]
    aw, ah = ART[2] - ART[0], ART[3] - ART[1]
    frac = rng.uniform(0.55, 0.85)
    cw = int(min(w, h * aw / ah) * frac)
    ch = int(cw * ah / aw)
    x0 = int(rng.integers(0, max(1, w - cw)))
    y0 = int(rng.integers(0, max(1, h - ch)))
    return cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (aw, ah), interpolation=cv2.INTER_AREA)


def _foil(art: np.ndarray, seed: int) -> np.ndarray:
    """A rainbow foil sheen with a fine diagonal pattern over the art."""
    h, w = art.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = (xs + ys) / 40.0 + seed
    hue = ((np.sin(phase) + 1) * 90).astype(np.uint8)
    sheen = cv2.cvtColor(cv2.merge([hue, np.full_like(hue, 160), np.full_like(hue, 255)]), cv2.COLOR_HSV2BGR)
    lines = (np.sin((xs - ys) / 2.5) > 0.6).astype(np.float32)[..., None]
    out = art.astype(np.float32) * 0.7 + sheen.astype(np.float32) * 0.3
    out = out * (1 - 0.25 * lines) + 255 * 0.25 * lines
    return np.clip(out, 0, 255).astype(np.uint8)


def render(card: Card, art_dir: Path) -> np.ndarray:
    """The card's printed face (BGR, CARD_W x CARD_H)."""
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = _template()
    img = _TEMPLATE.copy()
    art = _artwork(card, art_dir)
    if card.foil:
        art = _foil(art, card.art_seed)
    img[ART[1] : ART[3], ART[0] : ART[2]] = art
    name_color = {"c": (10, 10, 10), "r": (10, 10, 10), "ur": (20, 20, 20), "scr": (30, 30, 30)}[card.rarity]
    cv2.putText(img, card.name[:24], (32, 52), FONT, 0.8, name_color, 2, cv2.LINE_AA)
    for i in range(card.level):  # level stars
        cx = CARD_W - 44 - i * 26
        cv2.circle(img, (cx, 80), 9, (30, 60, 220), -1)
        cv2.circle(img, (cx, 80), 9, (20, 20, 20), 1)
    cv2.putText(img, card.set_code, (CARD_W - 150, 412), FONT, 0.42, (10, 10, 10), 1, cv2.LINE_AA)
    cv2.circle(img, (CARD_W - 34, 408), 7, (20, 20, 20), -1)  # set symbol
    cv2.putText(img, "[Dragon / Effect]", (30, 440), FONT, 0.45, (10, 10, 10), 1, cv2.LINE_AA)
    for j, line in enumerate(_wrap(RULES[card.rules], 52)[:5]):
        cv2.putText(img, line, (30, 462 + 16 * j), FONT, 0.38, (10, 10, 10), 1, cv2.LINE_AA)
    cv2.putText(
        img,
        f"ATK/{card.attack}  DEF/{card.attack - 600}",
        (CARD_W - 210, 558),
        FONT,
        0.45,
        (10, 10, 10),
        1,
        cv2.LINE_AA,
    )
    stamp = RARITY_COLORS[card.rarity]
    cv2.rectangle(img, (CARD_W - 40, CARD_H - 36), (CARD_W - 18, CARD_H - 16), stamp, -1)  # rarity stamp
    return img


def make_set(art_files: list[str], n_present: int, n_absent: int, n_variants: int, seed: int = 0):
    """Cards of one set: (present, absent, present variants, absent variants).

    Present variants share artwork with a present card and are in the collection
    too; absent variants share artwork with a present card and are not.
    """
    rng = np.random.default_rng(seed)
    need = n_present + n_absent
    if len(art_files) < need:
        raise ValueError(f"need {need} artwork images, have {len(art_files)}")
    files = [art_files[i] for i in rng.permutation(len(art_files))[:need]]

    def name() -> str:
        return " ".join("".join(rng.choice(SYLLABLES, int(rng.integers(2, 4)))).capitalize() for _ in range(2))

    def card(i: int, f: str) -> Card:
        return Card(
            key=f"LOCH-EN{i:03d}",
            name=name(),
            art_source=f,
            art_seed=int(rng.integers(1 << 30)),
            set_code=f"LOCH-EN{i:03d}",
            rules=int(rng.integers(len(RULES))),
            level=int(rng.integers(1, 9)),
            attack=int(rng.integers(10, 30)) * 100,
        )

    present = [card(i, f) for i, f in enumerate(files[:n_present])]
    absent = [card(1000 + i, f) for i, f in enumerate(files[n_present:])]
    kinds = ["set_code", "rarity", "foil"]

    def variant(base: Card, kind: str, tag: str) -> Card:
        if kind == "set_code":
            return replace(base, key=f"{base.key}-{tag}", set_code=f"RA0{tag[-1]}-EN{base.key[-3:]}")
        if kind == "rarity":
            return replace(base, key=f"{base.key}-{tag}", rarity="scr" if base.rarity != "scr" else "ur")
        return replace(base, key=f"{base.key}-{tag}", foil=True, rarity="ur")

    picks = rng.permutation(n_present)[: 2 * n_variants]
    present_variants = [variant(present[j], kinds[k % 3], "v1") for k, j in enumerate(picks[:n_variants])]
    absent_variants = [variant(present[j], kinds[k % 3], "v2") for k, j in enumerate(picks[n_variants:])]
    return present, absent, present_variants, absent_variants


def _playmat(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    base = np.array(rng.integers(20, 120, 3), np.float32)
    tex = cv2.resize(rng.uniform(0, 1, (12, 16)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(base[None, None] * (0.6 + 0.8 * tex[..., None]), 0, 255).astype(np.uint8)
    for _ in range(3):  # printed playmat zones
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.rectangle(
            img,
            (x, y),
            (x + int(rng.integers(80, 300)), y + int(rng.integers(80, 300))),
            tuple(int(c) for c in rng.integers(60, 200, 3)),
            2,
        )
    return img


# Where printings of one card differ (face pixels, x0, y0, x1, y1): what a photo must show to tell them apart.
DIFFER_REGIONS = {
    "set_code": (CARD_W - 152, 398, CARD_W - 48, 418),
    "stamp": (CARD_W - 40, CARD_H - 36, CARD_W - 18, CARD_H - 16),
}
GLARE_HIDES = 90.0  # grey levels of glare added at a point: what was printed there is washed out


def photograph(face: np.ndarray, seed: int, size: tuple[int, int] = (1280, 960)) -> np.ndarray:
    """A phone photo of the card: sleeve, hand or playmat, perspective, glare, blur, JPEG."""
    return photograph_seen(face, seed, {}, size)[0]


def photograph_seen(
    face: np.ndarray, seed: int, regions: dict[str, tuple[int, int, int, int]], size: tuple[int, int] = (1280, 960)
) -> tuple[np.ndarray, dict[str, float]]:
    """:func:`photograph`, and for each of ``regions`` (face pixels) the fraction of it the photo shows:
    inside the frame, not under a finger, not washed out by the glare (the same photo either way)."""
    rng = np.random.default_rng(seed)
    w, h = size
    card = face.astype(np.float32)
    setting = ["sleeve", "hand", "playmat"][seed % 3]
    if setting == "sleeve":  # a clear sleeve: a margin of plastic, a slight haze
        pad = 14
        card = cv2.copyMakeBorder(card, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(225, 225, 230))
        card = card * 0.92 + 255 * 0.08
    scene = _playmat(rng, w, h).astype(np.float32)
    ch, cw = card.shape[:2]
    scale = rng.uniform(0.55, 0.85) * h / ch
    cx, cy = w / 2 + rng.uniform(-0.15, 0.15) * w, h / 2 + rng.uniform(-0.08, 0.08) * h
    half = np.float32([[-cw, -ch], [cw, -ch], [cw, ch], [-cw, ch]]) * scale / 2
    tilt = rng.uniform(-0.15, 0.15, 2)
    half[:, 0] *= 1 + tilt[1] * np.sign(half[:, 1])
    half[:, 1] *= 1 + tilt[0] * np.sign(half[:, 0])
    a = np.radians(rng.uniform(-20, 20))
    rot = np.float32([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = (half @ rot.T + np.float32([cx, cy])).astype(np.float32)
    m = cv2.getPerspectiveTransform(np.float32([[0, 0], [cw, 0], [cw, ch], [0, ch]]), dst)
    warped = cv2.warpPerspective(card, m, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones((ch, cw), np.float32), m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    img = warped * mask + scene * (1 - mask)
    fingers = np.zeros((h, w), np.uint8)
    if setting == "hand":  # fingers over a lower corner
        corner = dst[int(rng.choice([2, 3]))]
        for k in range(3):
            c = (int(corner[0] + rng.uniform(-60, 60)), int(corner[1] - 30 * k + rng.uniform(-20, 20)))
            axes, angle = (int(rng.uniform(80, 120)), 36), float(rng.uniform(0, 180))
            cv2.ellipse(img, c, axes, angle, 0, 360, (120, 150, 205), -1, cv2.LINE_AA)
            cv2.ellipse(fingers, c, axes, angle, 0, 360, 1, -1)
    ys, xs = np.ogrid[0:h, 0:w]  # glare
    gx, gy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.2, 0.8) * h
    sx, sy = rng.uniform(0.04, 0.1) * w, rng.uniform(0.04, 0.12) * h
    glare = rng.uniform(90, 200)
    img = img + np.exp(-(((xs - gx) / sx) ** 2 + ((ys - gy) / sy) ** 2))[..., None] * glare
    seen = {}
    offset = (cw - face.shape[1]) / 2  # the sleeve's margin
    for name, (x0, y0, x1, y1) in regions.items():
        grid = np.stack(np.meshgrid(np.linspace(x0, x1, 7), np.linspace(y0, y1, 5)), -1).reshape(-1, 1, 2) + offset
        px, py = cv2.perspectiveTransform(grid.astype(np.float32), m).reshape(-1, 2).T
        inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        xi, yi = np.clip(px.astype(int), 0, w - 1), np.clip(py.astype(int), 0, h - 1)
        washed = np.exp(-(((px - gx) / sx) ** 2 + ((py - gy) / sy) ** 2)) * glare >= GLARE_HIDES
        seen[name] = float(np.mean(inside & (fingers[yi, xi] == 0) & ~washed))
    img = img * rng.uniform(0.75, 1.1) + rng.uniform(-15, 15)
    img = np.clip(img, 0, 255).astype(np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.3))
    img = np.clip(img + rng.normal(0, rng.uniform(2, 5), img.shape), 0, 255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(65, 92))])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR), seen
