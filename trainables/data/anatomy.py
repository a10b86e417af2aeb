"""A synthetic lateral cephalogram: anatomical shape model and X-ray-like rendering.

The shape is a mean landmark layout (millimetres, ``mean_shape_aariz29.csv``) deformed by a few
correlated anatomical modes and moved by a random similarity transform. The image is drawn as
additive X-ray-like layers (bone bright, soft tissue grey) through which the landmarks' own
structures pass: skull vault through N, sella cup around S, orbit floor at Or, ear rod at Po,
maxilla and palate through ANS/PNS/A, mandible outline through Co-Ar-R-Go-Me-Gn-Pog-B, teeth with
cusp tips and apices at the dental landmarks, soft-tissue profile through N`-Pn-Sn-Ls-Li-Pog`.
"""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from trainables.data.landmarks import AARIZ_SYMBOLS

FIELD_MM = (193.5, 240.0)  # width, height of the mean-shape field
MANDIBLE = ("B", "Me", "Pog", "Gn", "Go", "R", "LPM", "LIT", "LMT", "LIA", "Li", "Pog`")


def load_mean_shape() -> np.ndarray:
    """The 29 mean landmark positions in mm, (29, 2), in ``AARIZ_SYMBOLS`` order."""
    text = resources.files("trainables.data").joinpath("mean_shape_aariz29.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    by_symbol = {r["symbol"]: (float(r["x_mm"]), float(r["y_mm"])) for r in rows}
    return np.array([by_symbol[s] for s in AARIZ_SYMBOLS], dtype=np.float64)


def sample_shape(mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mean shape + correlated anatomical deformation + random similarity transform (mm)."""
    idx = {s: i for i, s in enumerate(AARIZ_SYMBOLS)}
    pts = mean.copy()
    centre = pts.mean(axis=0)
    pts = centre + (pts - centre) * rng.normal(1.0, 0.04, size=2)  # head length / height
    # Mandible opens or closes about the condyle, carrying the lower teeth and lower lip.
    jaw = [idx[s] for s in MANDIBLE]
    pivot = pts[idx["Co"]]
    a = np.deg2rad(rng.normal(0.0, 3.0))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts[jaw] = pivot + (pts[jaw] - pivot) @ rot.T
    # Maxillary protrusion moves the upper face and its soft tissue forward together.
    upper = [idx[s] for s in ("A", "ANS", "UIA", "UIT", "Ls", "Sn", "Pn")]
    pts[upper, 0] += rng.normal(0.0, 2.0)
    # Lower face height about the palatal plane.
    below = pts[:, 1] > pts[idx["ANS"], 1]
    pts[below, 1] = pts[idx["ANS"], 1] + (pts[below, 1] - pts[idx["ANS"], 1]) * rng.normal(
        1.0, 0.05
    )
    # A smooth low-frequency field keeps neighbouring points correlated; then a little jitter.
    k = rng.normal(0.0, 1.0, size=(2, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(2, 3))
    for d in range(2):
        for j in range(3):
            freq = (j + 1) * np.pi / 240.0
            pts[:, d] += k[d, j] * np.sin(freq * pts[:, 1 - d] + phase[d, j])
    pts += rng.normal(0.0, 0.5, size=pts.shape)
    # Similarity transform about the field centre: patient positioning.
    field_centre = np.array(FIELD_MM) / 2
    a = np.deg2rad(rng.uniform(-6.0, 6.0))
    s = rng.uniform(0.92, 1.08)
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    shift = rng.uniform(-8.0, 8.0, size=2)
    return field_centre + (pts - field_centre) @ rot.T + shift


def _spline(points: np.ndarray, samples: int = 12) -> list[tuple[float, float]]:
    """Catmull-Rom curve through ``points`` (n, 2) as a polyline."""
    p = np.vstack([points[0], points, points[-1]])
    out = []
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[:, None]
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        seg = 0.5 * (
            2 * p1
            + (-p0 + p2) * t
            + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
            + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
        )
        out.extend(map(tuple, seg))
    out.append(tuple(p[-2]))
    return out


class _Canvas:
    """Additive X-ray layers: each structure adds its attenuation to a float image."""

    def __init__(self, width: int, height: int, mm_per_px: float, origin_mm: np.ndarray) -> None:
        self.size = (width, height)
        self.scale = 1.0 / mm_per_px
        self.origin = origin_mm
        self.image = np.zeros((height, width), dtype=np.float32)

    def px(self, mm: np.ndarray) -> np.ndarray:
        return (np.asarray(mm, dtype=np.float64) - self.origin) * self.scale

    def add(self, intensity: float, draw_fn) -> None:
        layer = Image.new("L", self.size, 0)
        draw_fn(ImageDraw.Draw(layer), self)
        self.image += intensity * (np.asarray(layer, dtype=np.float32) / 255.0)

    def w(self, mm: float) -> int:
        return max(1, round(mm * self.scale))


def render(
    pts_mm: np.ndarray, width: int, height: int, mm_per_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Draw one cephalogram (uint8, height x width) whose structures pass through the landmarks."""
    L = {s: pts_mm[i] for i, s in enumerate(AARIZ_SYMBOLS)}
    field = np.array([width, height]) * mm_per_px
    origin = (np.array(FIELD_MM) - field) / 2  # keep the head centred whatever the spacing
    c = _Canvas(width, height, mm_per_px, origin)

    def poly(*names_or_pts):
        return [tuple(c.px(L[p] if isinstance(p, str) else p)) for p in names_or_pts]

    def curve(*names_or_pts):
        pts = np.array([L[p] if isinstance(p, str) else p for p in names_or_pts])
        return _spline(c.px(pts))

    S, N, Po = L["S"], L["N"], L["Po"]
    # Soft tissue of the head and neck: a grey silhouette bounded by the soft-tissue profile.
    crown = np.array([S[0] - 5, S[1] - 88])
    occiput = np.array([Po[0] - 40, S[1] - 30])
    neck_back = np.array([Po[0] - 20, L["Me"][1] + 40])
    neck_front = np.array([L["Me"][0] - 5, L["Me"][1] + 40])
    profile = curve(
        np.array([N[0] + 12, N[1] - 40]),
        "N`",
        "Pn",
        "Sn",
        "Ls",
        "Li",
        "Pog`",
        np.array([L["Pog`"][0] - 12, L["Me"][1] + 14]),
        neck_front,
    )
    back = curve(
        neck_front,
        neck_back,
        np.array([occiput[0] - 5, Po[1]]),
        occiput,
        crown,
        np.array([N[0] + 12, N[1] - 40]),
    )
    c.add(0.22, lambda d, c: d.polygon(profile + back, fill=255))
    # Skull vault: thick bone arc from the occiput over the crown to nasion.
    vault = curve(
        np.array([Po[0] - 8, Po[1] + 12]),
        np.array([occiput[0] + 6, Po[1] - 10]),
        occiput + (8, 6),
        crown + (0, 8),
        np.array([N[0] - 6, N[1] - 38]),
        "N",
    )
    c.add(0.35, lambda d, c: d.line(vault, fill=255, width=c.w(6), joint="curve"))
    # Cranial base from sella to nasion, and the sella cup around S.
    c.add(0.18, lambda d, c: d.line(poly("S", "N"), fill=255, width=c.w(3)))
    r = c.w(5)
    sx, sy = c.px(S)
    c.add(
        0.35, lambda d, c: d.arc([sx - r, sy - r, sx + r, sy + r], 0, 180, fill=255, width=c.w(1.5))
    )
    # Orbit ring with its floor at Or; ear rod ring with its top at Po.
    ox, oy = c.px(L["Or"])
    ro = c.w(11)
    c.add(
        0.25,
        lambda d, c: d.ellipse([ox - ro, oy - 2 * ro, ox + ro, oy], outline=255, width=c.w(1.5)),
    )
    px_, py_ = c.px(Po)
    rp = c.w(4)
    c.add(
        0.4,
        lambda d, c: d.ellipse(
            [px_ - rp, py_, px_ + rp, py_ + 2 * rp], outline=255, width=c.w(1.5)
        ),
    )
    # Maxilla with the palatal plane, and the nose cartilage.
    c.add(0.25, lambda d, c: d.polygon(poly("PNS", "ANS", "A", "UIA", "UPM", "UMT"), fill=255))
    c.add(0.3, lambda d, c: d.line(poly("PNS", "ANS"), fill=255, width=c.w(2)))
    c.add(0.08, lambda d, c: d.polygon(poly("N`", "Pn", "Sn"), fill=255))
    # Mandible: body and ramus filled, cortical outline through the skeletal landmarks.
    notch = L["Co"] + np.array([14.0, 6.0])
    coronoid = L["Co"] + np.array([24.0, 0.0])
    body = poly("Co", "Ar", "R", "Go", "Me", "Gn", "Pog", "B", "LIA", "LPM", "LMT", coronoid, notch)
    c.add(0.25, lambda d, c: d.polygon(body, fill=255))
    outline = curve("Co", "Ar", "R", "Go", "Me", "Gn", "Pog", "B")
    c.add(0.3, lambda d, c: d.line(outline, fill=255, width=c.w(2.5), joint="curve"))
    # Teeth: incisors as bright bars apex -> tip, premolars and molars as crowns on the cusp line.
    c.add(0.45, lambda d, c: d.line(poly("UIA", "UIT"), fill=255, width=c.w(4)))
    c.add(0.45, lambda d, c: d.line(poly("LIA", "LIT"), fill=255, width=c.w(4)))
    for tip, sign, size in (("UPM", -1, 4), ("UMT", -1, 5), ("LPM", 1, 4), ("LMT", 1, 5)):
        tx, ty = c.px(L[tip])
        hw, hh = c.w(size), c.w(2 * size)
        box = [tx - hw, min(ty, ty + sign * hh), tx + hw, max(ty, ty + sign * hh)]
        c.add(0.4, lambda d, c, box=box: d.rectangle(box, fill=255))

    img = Image.fromarray(np.clip(c.image * 255.0, 0, 255).astype(np.uint8))
    img = img.filter(ImageFilter.GaussianBlur(radius=max(0.5, 0.6 * c.scale)))
    x = np.asarray(img, dtype=np.float32) / 255.0
    # Exposure: a smooth illumination gradient, gamma, then quantum noise.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gx, gy = rng.uniform(-0.15, 0.15, size=2)
    x = x * (1.0 + gx * (xx / width - 0.5) + gy * (yy / height - 0.5)) + 0.08
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(0.8, 1.2)
    x = x + rng.normal(0.0, 0.03, size=x.shape).astype(np.float32)
    return (np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8)
