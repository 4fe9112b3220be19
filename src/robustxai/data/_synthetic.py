"""The built-in ``synthetic-fracture`` benchmark: radiograph-like images of long bones, some fractured.

Why it exists: every audit needs a data set with pixel-exact ground truth that can be generated on the spot,
with no download. The images look like a crude limb radiograph — soft tissue with smooth gradients, film
grain and blur, one or two long bones (bright cortex, darker medullary cavity) — and label 1 means the main
bone carries a fracture: a thin dark gap through both cortices with a slight displacement of one fragment.
Negatives sometimes carry hard look-alikes (a thin dark line that does not cross the cortex, or a
soft-tissue edge), and every image has a side marker ("L"/"R") in a corner and sometimes a ruler.
``shortcut`` ties the marker corner to the label, to study models that learn the marker instead of the
fracture.

Every image is a pure function of ``(seed, index)`` and the constructor arguments: ``ds[i]`` seeds its own
generators from ``numpy.random.SeedSequence([seed, i, stream])``, so access order and ``n`` never change it.
The label has its own stream, so :meth:`SyntheticFracture.labels` answers without rendering. All random draws
are made in a fixed order whatever the label, so ``_render(i, draw_fracture=False)`` is the same image
without the fracture (used by the tests to check that the mask sits on the rendered gap).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from robustxai._errors import DataError
from robustxai.data._base import ImageDataset, Sample
from robustxai.data._truth import Truth

_RENDER_STREAM = 0
_LABEL_STREAM = 1
_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
_SIDES = ("top", "bottom", "left", "right")
_LOOKALIKES = ("medullary_line", "soft_tissue_line", "soft_tissue_edge")
_LOOKALIKE_RATE = {0: 0.4, 1: 0.2}  # negatives get more; positives some, so a line alone is no cue
_GLYPHS = {
    "L": np.array([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=bool),
    "R": np.array([[1, 1, 1, 0], [1, 0, 0, 1], [1, 1, 1, 0], [1, 0, 1, 0], [1, 0, 0, 1]], dtype=bool),
}

Array = np.ndarray


class _LineSpec(NamedTuple):
    """Parameters of a look-alike: kind, angle (rad), position along the shaft or in the image, size."""

    kind: str
    angle: float
    t_pos: float
    pt: Array
    length: float
    amp: float
    half_width: float


def _line_profile(dist: Array, half_width: float) -> Array:
    """Flat-topped profile of a thin line: 1 on the line, 0.5 at ``half_width``, ~0 a pixel further."""
    q = (dist / half_width) ** 2
    out: Array = 1.0 / (1.0 + q * q)
    return out


def _sigmoid(z: Array) -> Array:
    out: Array = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def _tube(d: Array, w: float, r: float) -> Array:
    """Projected thickness of a hollow cylinder (cortex radius ``w``, cavity radius ``r``), peak 1.

    A radiograph integrates density along the beam, so a tube shows bright edges (cortex seen
    tangentially) and a darker middle (cavity): exactly the look of a long-bone shaft.
    """
    d2 = d * d
    outer = np.sqrt(np.maximum(w * w - d2, 0.0))
    inner = np.sqrt(np.maximum(r * r - d2, 0.0))
    peak = math.sqrt(w * w - r * r)
    out: Array = (outer - 0.85 * inner) / peak
    return out


def _frame(xx: Array, yy: Array, origin: Array, direction: Array) -> tuple[Array, Array]:
    """Pixel coordinates along ``direction`` and across it (to its left), relative to ``origin``.

    Scalars are passed as Python floats so that the float32 grids stay float32 (NumPy 2 promotes
    float32 arrays times float64 *NumPy* scalars to float64, which halves the speed).
    """
    ox, oy, ux, uy = float(origin[0]), float(origin[1]), float(direction[0]), float(direction[1])
    dx, dy = xx - ox, yy - oy
    return dx * ux + dy * uy, dy * ux - dx * uy


def _segment_distance(xx: Array, yy: Array, p0: Array, v: Array, lo: float, hi: float) -> Array:
    """Distance of every pixel centre to the segment ``p0 + lam * v``, ``lam`` in ``[lo, hi]``."""
    along, across = _frame(xx, yy, p0, v)
    lam = np.clip(along, lo, hi)
    out: Array = np.hypot(along - lam, across)
    return out


class SyntheticFracture(ImageDataset):
    """Radiograph-like long-bone images; label 1 = fractured, with mask and expert-click ground truth.

    Args:
        n: Number of images.
        size: Side of the square images in pixels (16 to 224).
        seed: Non-negative seed; image ``i`` depends only on ``(seed, i)`` and the arguments below.
        shortcut: Probability that the side marker's corner encodes the label (top-left for a fracture,
            bottom-right for normal); 0 leaves the marker uninformative, 1 makes it a perfect shortcut.
        fracture_rate: Expected fraction of fractured images.

    Raises:
        DataError: If an argument is out of range.
    """

    class_names = ["normal", "fracture"]

    def __init__(
        self, n: int, size: int = 64, seed: int = 0, shortcut: float = 0.0, fracture_rate: float = 0.5
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"synthetic-fracture: n must be an integer >= 1, got {n!r}")
        if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 224:
            raise DataError(f"synthetic-fracture: size must be an integer in [16, 224], got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise DataError(f"synthetic-fracture: seed must be a non-negative integer, got {seed!r}")
        for name, value in (("shortcut", shortcut), ("fracture_rate", fracture_rate)):
            if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                raise DataError(f"synthetic-fracture: {name} must be a number in [0, 1], got {value!r}")
        self.n = n
        self.size = size
        self.seed = seed
        self.shortcut = float(shortcut)
        self.fracture_rate = float(fracture_rate)
        c = np.arange(size, dtype=np.float32)
        self._yy, self._xx = np.meshgrid(c, c, indexing="ij")
        self._labels: list[int] | None = None

    def __len__(self) -> int:
        return self.n

    def _load(self, i: int) -> Sample:
        """Render image ``i``."""
        image, label, truth, meta = self._render(i)
        tensor = torch.from_numpy(image[None])
        return Sample(image=tensor, label=label, truth=truth, id=f"synth-{self.seed}-{i:06d}", meta=meta)

    def labels(self) -> list[int]:
        """All labels in order, drawn from the label stream alone (no rendering)."""
        if self._labels is None:
            self._labels = [self._label(i) for i in range(self.n)]
        return list(self._labels)

    def _rng(self, i: int, stream: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, i, stream]))

    def _label(self, i: int) -> int:
        return int(self._rng(i, _LABEL_STREAM).random() < self.fracture_rate)

    def _render(self, i: int, draw_fracture: bool = True) -> tuple[Array, int, Truth, dict[str, object]]:
        """Render image ``i``: returns ``(image [S, S] float32 in [0, 1], label, truth, meta)``.

        ``draw_fracture=False`` renders the same image (same draws, same noise) without the fracture gap and
        displacement, while the label and truth stay those of the real image.
        """
        S = self.size
        sc = S / 64.0
        xx, yy = self._xx, self._yy
        label = self._label(i)
        rng = self._rng(i, _RENDER_STREAM)
        meta: dict[str, object] = {"size": S, "seed": self.seed, "index": i}

        # Soft tissue: air level, a smooth limb band along the bone, low-frequency gradients and blobs.
        air = rng.uniform(0.03, 0.12)
        tissue = rng.uniform(0.16, 0.30)
        gx, gy = rng.uniform(-0.08, 0.08, size=2)
        blob_c = rng.uniform(0.0, S, size=(2, 2))
        blob_s = rng.uniform(0.3, 0.6, size=2) * S
        blob_a = rng.uniform(-0.05, 0.05, size=2)

        # Bones: the main one passes near the centre so that it crosses most of the image.
        theta = rng.uniform(0.0, math.pi)
        u = np.array([math.cos(theta), math.sin(theta)])
        nrm = np.array([-u[1], u[0]])
        c0 = S / 2.0 - 0.5 + rng.uniform(-0.15, 0.15, size=2) * S
        w0 = rng.uniform(0.06, 0.11) * S
        r0 = w0 * rng.uniform(0.5, 0.72)
        half_len0 = rng.uniform(0.5, 0.9) * S
        contrast = rng.uniform(0.22, 0.42)
        two_bones = rng.random() < 0.4
        w1 = w0 * rng.uniform(0.5, 0.8)
        r1 = w1 * rng.uniform(0.45, 0.7)
        side1 = 1.0 if rng.random() < 0.5 else -1.0
        gap1 = rng.uniform(1.0, 0.08 * S + 1.0)
        theta1 = theta + math.radians(rng.uniform(-8.0, 8.0))
        half_len1 = rng.uniform(0.5, 0.9) * S
        limb_margin = rng.uniform(0.12, 0.4) * S
        limb_tilt = math.radians(rng.uniform(-10.0, 10.0))

        # Fracture parameters are drawn for every image so that the streams stay aligned across labels.
        phi = math.radians(rng.uniform(50.0, 130.0))
        t_candidates = rng.uniform(-1.0, 1.0, size=16)
        gap_hw = rng.uniform(1.2, 1.7) * sc
        depth = rng.uniform(0.8, 1.0)
        shift = rng.uniform(2.0, 3.0) * sc * (1.0 if rng.random() < 0.5 else -1.0)
        n_points = int(rng.integers(3, 9))
        lam_u = rng.uniform(-0.9, 0.9, size=n_points)
        jitter = rng.uniform(-0.25, 0.25, size=n_points)

        # Look-alike (thin dark line that does not cross the cortex, or a soft-tissue edge).
        has_lookalike = rng.random() < _LOOKALIKE_RATE[label]
        kind = _LOOKALIKES[int(rng.integers(len(_LOOKALIKES)))]
        la_angle = rng.uniform(0.0, math.pi)
        la_t = rng.uniform(-0.35, 0.35) * S
        la_pt = rng.uniform(0.1, 0.9, size=2) * S
        la_len = rng.uniform(0.2, 0.5) * S
        la_amp = rng.uniform(0.08, 0.18)

        # Nuisances: side marker, optional ruler, blur and film grain.
        use_shortcut = rng.random() < self.shortcut
        corner = int(rng.integers(4))
        if use_shortcut:
            corner = 0 if label == 1 else 3
        letter = "L" if rng.random() < 0.5 else "R"
        marker_level = rng.uniform(0.85, 1.0)
        marker_jitter = rng.integers(0, max(1, round(3 * sc)) + 1, size=2)
        has_ruler = rng.random() < 0.3
        ruler_side = int(rng.integers(4))
        ruler_level = rng.uniform(0.6, 0.85)
        ruler_offset = int(rng.integers(0, 4))
        blur = rng.uniform(0.4, 0.7) * sc
        grain = rng.uniform(0.008, 0.025)
        noise = rng.standard_normal((S, S), dtype=np.float32)

        # ---- render ------------------------------------------------------------------------------------
        t0, d0 = _frame(xx, yy, c0, u)
        v = math.cos(phi) * u + math.sin(phi) * nrm  # fracture direction
        vn = float(v @ nrm)
        t_max = max(0.0, min(half_len0 - w0 - 2.0, 0.4 * S))
        f0 = c0.copy()
        lam_lo = lam_hi = 0.0
        margin = max(1.0, 2.0 * sc) + 1.0
        for t_c in [*(t_candidates * t_max), 0.0]:  # first placement that keeps the line in the image
            f0 = c0 + t_c * u
            d_lo, d_hi = -w0 + min(0.0, shift), w0 + max(0.0, shift)
            lam_lo, lam_hi = sorted((d_lo / vn, d_hi / vn))
            ends = np.array([f0 + lam_lo * v, f0 + lam_hi * v])
            if ends.min() >= margin and ends.max() <= S - 1 - margin:
                break
        fractured = label == 1 and draw_fracture
        s_signed = _frame(xx, yy, f0, v)[1]  # signed distance to the fracture line
        d_eff = d0 - np.float32(shift) * (s_signed > 0) if fractured else d0
        end_cap = _sigmoid((half_len0 - np.abs(t0)) / max(0.5, sc))
        bone0 = _tube(d_eff, w0, r0) * end_cap
        if fractured:
            bone0 = bone0 * (1.0 - depth * _line_profile(np.abs(s_signed), gap_hw))
        bones = bone0
        limb_c, limb_hw = c0, w0 + limb_margin
        if two_bones:
            u1 = np.array([math.cos(theta1), math.sin(theta1)])
            c1 = c0 + side1 * (w0 + w1 + gap1) * nrm
            t1, d1 = _frame(xx, yy, c1, u1)
            bones = bones + 0.85 * _tube(d1, w1, r1) * _sigmoid((half_len1 - np.abs(t1)) / max(0.5, sc))
            limb_c = (c0 + c1) / 2.0
            limb_hw = (w0 + w1 + gap1) / 2.0 + w1 + limb_margin
        ul = np.array([math.cos(theta + limb_tilt), math.sin(theta + limb_tilt)])
        d_limb = _frame(xx, yy, limb_c, ul)[1]
        img = air + tissue * _sigmoid((limb_hw - np.abs(d_limb)) / (1.5 * sc))
        img = img + float(gx) * (xx / S - 0.5) + float(gy) * (yy / S - 0.5)
        for k in range(2):
            r2 = (xx - float(blob_c[k, 0])) ** 2 + (yy - float(blob_c[k, 1])) ** 2
            img = img + float(blob_a[k]) * np.exp(-r2 / float(2.0 * blob_s[k] ** 2))
        img = img + contrast * bones

        meta["lookalike"] = kind if has_lookalike else None
        if has_lookalike:
            spec = _LineSpec(kind, la_angle, la_t, la_pt, la_len, la_amp, gap_hw)
            img = self._draw_lookalike(img, spec, d0, u, c0, r0, bones)
        img = gaussian_filter(img, sigma=blur, mode="nearest") + grain * noise
        self._draw_marker(img, corner, letter, marker_level, marker_jitter, sc)
        if has_ruler:
            self._draw_ruler(img, ruler_side, ruler_level, ruler_offset, sc)
        image = np.clip(img, 0.0, 1.0).astype(np.float32)

        # ---- truth ------------------------------------------------------------------------------------
        if label == 1:
            mask_r = max(1.0, 2.0 * sc)
            mask = _segment_distance(xx, yy, f0, v, lam_lo, lam_hi) <= mask_r
            lam = lam_u * (lam_hi - lam_lo) / 2.0 + (lam_hi + lam_lo) / 2.0
            across = (jitter * mask_r)[:, None] * np.array([-v[1], v[0]])
            pts = f0[None, :] + lam[:, None] * v[None, :] + across
            rc = np.rint(pts).astype(int)
            ok = (rc >= 0).all(1) & (rc < S).all(1)
            ok[ok] = mask[rc[ok, 1], rc[ok, 0]]
            truth = Truth(mask=mask, points=pts[ok])
        else:
            truth = Truth(mask=np.zeros((S, S), dtype=bool), points=np.zeros((0, 2)))
        meta.update(
            n_bones=2 if two_bones else 1,
            bone_angle_deg=round(math.degrees(theta), 2),
            bone_half_width_px=round(w0, 2),
            fracture_angle_deg=round(math.degrees(phi), 2) if label == 1 else None,
            displacement_px=round(shift, 2) if label == 1 else None,
            marker_corner=_CORNERS[corner],
            marker_letter=letter,
            ruler_side=_SIDES[ruler_side] if has_ruler else None,
            shortcut_applied=bool(use_shortcut),
        )
        return image, label, truth, meta

    def _draw_lookalike(
        self, img: Array, spec: _LineSpec, d0: Array, u: Array, c0: Array, r0: float, bones: Array
    ) -> Array:
        """Add a fracture look-alike that does not break the cortex (see module docstring)."""
        xx, yy = self._xx, self._yy
        kind, angle, t_pos, pt, length, amp, gap_hw = spec
        v = np.array([math.cos(angle), math.sin(angle)])
        if kind == "medullary_line":  # thin dark line confined to the cavity of the main bone
            p0 = c0 + t_pos * u
            dist = _segment_distance(xx, yy, p0, v, -length, length)
            inside = _sigmoid((0.8 * r0 - np.abs(d0)) / 0.5) * np.clip(bones * 4.0, 0.0, 1.0)
            out: Array = img - amp * _line_profile(dist, gap_hw) * inside
            return out
        if kind == "soft_tissue_line":  # thin dark line in soft tissue, interrupted by bone
            dist = _segment_distance(xx, yy, pt, v, -length / 2.0, length / 2.0)
            outside = 1.0 - np.clip(bones * 4.0, 0.0, 1.0)
            out = img - 0.8 * amp * _line_profile(dist, gap_hw) * outside
            return out
        # soft_tissue_edge: a skin fold crossing the image, a sharp step of soft-tissue density
        side = _frame(xx, yy, pt, v)[1]
        out = img + 0.5 * amp * _sigmoid(side / 0.6)
        return out

    def _draw_marker(
        self, img: Array, corner: int, letter: str, level: float, jitter: Array, sc: float
    ) -> None:
        """Burn a bright lead-marker letter into the given corner (in place)."""
        S = self.size
        k = max(1, round(1.6 * sc))
        glyph = np.kron(_GLYPHS[letter], np.ones((k, k), dtype=bool))
        gh, gw = glyph.shape
        m = max(1, round(2 * sc))
        top = m + int(jitter[0]) if corner in (0, 1) else S - m - int(jitter[0]) - gh
        left = m + int(jitter[1]) if corner in (0, 2) else S - m - int(jitter[1]) - gw
        patch = img[top : top + gh, left : left + gw]
        patch[glyph] = level

    def _draw_ruler(self, img: Array, side: int, level: float, offset: int, sc: float) -> None:
        """Burn a ruler (tick marks, longer every fifth) along one border (in place)."""
        S = self.size
        pitch = max(3, round(S / 16))
        short, long_ = max(2, round(2.5 * sc)), max(3, round(5 * sc))
        along = np.arange(S)
        tick = (along - offset) % pitch == 0
        length = np.where(((along - offset) // pitch) % 5 == 0, long_, short) * tick
        depth = np.arange(long_)[:, None]
        stripe = (depth < length[None, :]) | (depth == 0)  # [long_, S], row 0 at the border
        if side == 0:
            region = img[:long_, :]
        elif side == 1:
            region = img[::-1][:long_, :]
        elif side == 2:
            region = img.T[:long_, :]
        else:
            region = img.T[::-1][:long_, :]
        region[stripe] = level
