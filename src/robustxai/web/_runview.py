"""What the studio shows of a run, read through the results layer only (``read_rows`` and the run store).

A run stores per-sample rows for every test image (predictions, metrics) but pixels only for the images the
report draws (``figure_samples``) and their maps (``figure_maps``: every model × method × condition × ε the
audit explained). So the explorer lists every test image with its metrics, and shows the image, its expert
truth and every stored map for the images whose pixels the run keeps. Images and overlays are addressed by
integer ids (an index into the sorted listing), never by a path, and rendered to PNG on first request and
cached in memory.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
from PIL import Image

from robustxai._arrays import minmax_array
from robustxai._errors import RobustXAIError, first_line
from robustxai.results._run import read_rows
from robustxai.results._schema import MANIPULATION_PREFIX
from robustxai.results._store import Store

if TYPE_CHECKING:
    import torch

_CACHE_MAX = 2048


def condition_label(condition: str, epsilon: float) -> str:
    """``"clean"`` or ``"<attack>@<ε>"``, the name the studio shows for a condition."""
    return "clean" if condition == "clean" else f"{condition}@{epsilon:.4g}"


@dataclass(frozen=True)
class MapKey:
    """One stored map's identity: model × condition × ε × explainer of one sample."""

    model: str
    condition: str
    epsilon: float
    explainer: str
    sample_id: str

    @classmethod
    def from_json(cls, fields: Mapping[str, object]) -> MapKey:
        """The key a study stored as JSON (``dataclasses.asdict`` of a key).

        Raises:
            RobustXAIError: If a field is missing or the epsilon is not a number (a damaged study database).
        """
        missing = [f for f in ("model", "condition", "epsilon", "explainer", "sample_id") if f not in fields]
        epsilon = fields.get("epsilon")
        if missing or isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
            raise RobustXAIError(f"a stored map key is damaged (missing {missing}, epsilon {epsilon!r})")
        return cls(
            str(fields["model"]),
            str(fields["condition"]),
            float(epsilon),
            str(fields["explainer"]),
            str(fields["sample_id"]),
        )

    @property
    def condition_label(self) -> str:
        """The condition as the studio shows it."""
        return condition_label(self.condition, self.epsilon)


def _stored_image(entry: dict[str, np.ndarray | None]) -> np.ndarray:
    """The image ``[C, H, W]`` of a stored figure sample (the store writes one with every sample)."""
    image = entry["image"]
    if image is None:  # pragma: no cover - Store.figure_samples never gives one without its image
        raise RobustXAIError("a stored figure sample has no image")
    return image


def _to_png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


class MapSource(Protocol):
    """A run reopened for recomputation (what :func:`robustxai.audit._reload.open_run_context` returns)."""

    @property
    def sample_ids(self) -> list[str]:
        """The test images' ids in test-set order."""
        ...

    def image(self, index: int) -> torch.Tensor:
        """Test image ``index`` as a ``[C, H, W]`` tensor in [0, 1]."""
        ...

    def truth(self, index: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The image's expert mask and points (x, y), each possibly ``None``."""
        ...

    def explain(self, index: int, model: str, method: str, condition: str, epsilon: float) -> np.ndarray:
        """One map ``[H, W]``, as the audit computed it."""
        ...


def heat_png(m: np.ndarray) -> bytes:
    """A map as an inferno heat-map PNG whose alpha follows the min-max normalised value."""
    import matplotlib

    v = minmax_array(np.nan_to_num(np.asarray(m, dtype=np.float32)))
    rgba = (matplotlib.colormaps["inferno"](v) * 255).astype(np.uint8)
    rgba[..., 3] = (np.sqrt(v) * 255).astype(np.uint8)
    return _to_png(rgba)


def outline_path(mask: np.ndarray) -> str:
    """The boundary of a boolean mask as an SVG path in pixel units (one segment per pixel edge).

    Drawn with a thin stroke over the image, so the outline stays thin at any zoom (a PNG outline would be a
    whole pixel wide, which hides a small finding on a low-resolution image).
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    parts: list[str] = []
    vertical = m[1:-1, 1:] != m[1:-1, :-1]  # edge left of pixel column x (x = 0..W)
    for y, x in zip(*np.nonzero(vertical), strict=True):
        parts.append(f"M{x} {y}v1")
    horizontal = m[1:, 1:-1] != m[:-1, 1:-1]  # edge above pixel row y (y = 0..H)
    for y, x in zip(*np.nonzero(horizontal), strict=True):
        parts.append(f"M{x} {y}h1")
    return "".join(parts)


class RunView:
    """A run opened for the studio.

    Args:
        run_dir: The run directory (with ``results.sqlite``).
        reopen: Reopens the run for recomputing maps (the app layer passes
            :func:`robustxai.audit._reload.open_run_context`; the studio never imports the audit). ``None``:
            stored maps and metrics only.

    Raises:
        RobustXAIError: If the run store is missing or unreadable.
    """

    def __init__(self, run_dir: Path, reopen: Callable[[Path], MapSource] | None = None) -> None:
        self.path = Path(run_dir)
        self._reopen = reopen
        run = read_rows(self.path).frames
        self.samples = run["samples"].sort_values("idx").reset_index(drop=True)
        self.sample_ids: list[str] = [str(s) for s in self.samples["sample_id"]]
        self.metrics = run["metrics"][~run["metrics"]["condition"].str.startswith(MANIPULATION_PREFIX)].copy()
        self.metrics["cond"] = [
            condition_label(c, e)
            for c, e in zip(self.metrics["condition"], self.metrics["epsilon"], strict=True)
        ]
        self.predictions = run["predictions"]
        store = Store(self.path, readonly=True)
        try:
            self.pixels: dict[str, dict[str, np.ndarray | None]] = store.figure_samples()
            maps: pd.DataFrame = store.figure_maps()
        finally:
            store.close()
        maps = maps[~maps["condition"].str.startswith(MANIPULATION_PREFIX)].reset_index(drop=True)
        self.map_keys = [
            MapKey(str(m), str(c), float(e), str(x), str(s))
            for m, c, e, x, s in zip(
                maps["model"],
                maps["condition"],
                maps["epsilon"],
                maps["explainer"],
                maps["sample_id"],
                strict=True,
            )
        ]
        self._maps: list[np.ndarray] = list(maps["map"])
        self._map_index = {k: i for i, k in enumerate(self.map_keys)}
        self._cache: OrderedDict[tuple[str, Hashable], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._conditions = {
            condition_label(c, e): (str(c), float(e))
            for c, e in set(zip(self.metrics["condition"], self.metrics["epsilon"], strict=True))
        }
        mx = self.metrics[self.metrics["explainer"] != ""]
        #: model × method × condition label the audit computed (a skipped or failed one is not recomputed)
        self.audited: set[tuple[str, str, str]] = set(
            zip(mx["model"], mx["explainer"], mx["cond"], strict=True)
        )
        self._context: MapSource | None = None
        self._context_error: str | None = None if reopen else "the studio was started without recomputation"
        self._context_lock = threading.Lock()
        self._choices: dict[str, list[str]] | None = None
        self._columns: dict[tuple[str, str, str, str], dict[str, float]] = {}

    # -- lookups -------------------------------------------------------------------------------------------
    def sample_index(self, sample_id: str) -> int:
        """The integer id of a sample (its position in the listing)."""
        return self.sample_ids.index(sample_id)

    def map_id(self, key: MapKey) -> int | None:
        """The integer id of a stored map, or ``None`` when the run does not store it."""
        return self._map_index.get(key)

    def maps_of(self, sample_id: str) -> list[tuple[int, MapKey]]:
        """Every stored map of one sample with its id."""
        return [(i, k) for i, k in enumerate(self.map_keys) if k.sample_id == sample_id]

    def has_pixels(self, sample_id: str) -> bool:
        """Whether the run stores this image's pixels (the report's figure images)."""
        return sample_id in self.pixels

    def truth(self, sample_id: str) -> tuple[list[tuple[float, float]], str, int, int]:
        """An image's expert points, mask outline (SVG path), height and width.

        Read from the store for the report's figure images, else from the run's test set (0, 0: neither).
        """
        entry = self.pixels.get(sample_id)
        if entry is not None:
            shape, mask, points = _stored_image(entry).shape, entry["mask"], entry["points"]
        else:
            ctx = self.context()
            if ctx is None:
                return [], "", 0, 0
            index = ctx.sample_ids.index(sample_id)
            shape = tuple(ctx.image(index).shape)
            mask, points = ctx.truth(index)
        h, w = shape[-2:]
        outline = outline_path(mask) if mask is not None else ""
        pts = [] if points is None else [(float(x), float(y)) for x, y in points]
        return pts, outline, int(h), int(w)

    # -- rendering -----------------------------------------------------------------------------------------
    def _cached(self, kind: str, index: Hashable, render: Callable[[], bytes]) -> bytes:
        """The PNG of ``(kind, index)`` from the bounded LRU cache, rendered (and kept) on a miss."""
        with self._lock:
            hit = self._cache.get((kind, index))
            if hit is not None:
                self._cache.move_to_end((kind, index))
                return hit
        png: bytes = render()
        with self._lock:
            self._cache[(kind, index)] = png
            while len(self._cache) > _CACHE_MAX:
                self._cache.popitem(last=False)
        return png

    def image_png(self, index: int) -> bytes | None:
        """The image of sample ``index`` as an 8-bit PNG (stored, else read from the run's test set).

        ``None`` when there is no such image, or its pixels are neither stored nor recomputable.
        """
        if not 0 <= index < len(self.sample_ids):
            return None
        entry = self.pixels.get(self.sample_ids[index])
        if entry is not None:
            image = _stored_image(entry)
        else:
            ctx = self.context()
            if ctx is None:
                return None
            image = ctx.image(ctx.sample_ids.index(self.sample_ids[index])).numpy()

        def render() -> bytes:
            a = np.clip(np.nan_to_num(image), 0, 1)
            a = a[0] if a.shape[0] == 1 else np.moveaxis(a[:3], 0, -1)
            return _to_png((a * 255).round().astype(np.uint8))

        return self._cached("image", index, render)

    def overlay_png(self, map_id: int) -> bytes | None:
        """Stored map ``map_id`` as a heat-map PNG whose alpha follows the map (``None``: no such map)."""
        if not 0 <= map_id < len(self._maps):
            return None
        m = np.asarray(self._maps[map_id], dtype=np.float32)
        return self._cached("map", map_id, lambda: heat_png(m))

    # -- recomputation -------------------------------------------------------------------------------------
    def context(self) -> MapSource | None:
        """The run reopened for recomputing maps (the ``reopen`` given at construction), or None.

        Opened once, on first need (it rebuilds the test set); when it cannot be opened, the one-line reason
        is kept in :meth:`context_error` and the studio shows stored maps and metrics only.
        """
        with self._context_lock:
            if self._context is None and self._context_error is None and self._reopen is not None:
                try:
                    self._context = self._reopen(self.path)
                except (RobustXAIError, OSError, ValueError) as err:
                    self._context_error = first_line(err) or repr(err)
            return self._context

    def context_error(self) -> str | None:
        """Why maps cannot be recomputed for this run (``None``: they can, or it was not tried yet)."""
        return self._context_error

    def condition_of(self, label: str) -> tuple[str, float] | None:
        """``(condition, ε)`` of a condition label the studio shows (``None``: the run has no such one)."""
        return self._conditions.get(label)

    def live_png(self, index: int, model: str, method: str, cond: str) -> bytes:
        """The overlay PNG of one map: the stored one when the run keeps it, else recomputed and cached.

        The caller has checked ``model``, ``method`` and ``cond`` against :meth:`choices`.

        Raises:
            LookupError: With a one-line reason when the map cannot be shown (no such image, the run cannot
                be reopened, a model missing from the cache, a method that failed on it).
        """
        if not 0 <= index < len(self.sample_ids):
            raise LookupError(f"no image {index} in this run")
        if (model, method, cond) not in self.audited:
            raise LookupError(f"the run has no {method} maps of {model} under {cond}")
        condition, eps = self._conditions[cond]
        sid = self.sample_ids[index]
        stored = self.map_id(MapKey(model, condition, eps, method, sid))
        if stored is not None:
            png = self.overlay_png(stored)
            assert png is not None
            return png

        def render() -> bytes:
            ctx = self.context()
            if ctx is None:
                raise LookupError(f"maps cannot be recomputed: {self._context_error}")
            try:
                m = ctx.explain(ctx.sample_ids.index(sid), model, method, condition, eps)
            except (RobustXAIError, ValueError) as err:
                raise LookupError(str(err).strip().splitlines()[0]) from None
            return heat_png(np.asarray(m, dtype=np.float32))

        return self._cached("live", (index, model, method, cond), render)

    # -- listing -------------------------------------------------------------------------------------------
    def choices(self) -> dict[str, list[str]]:
        """The models, methods, conditions and metrics one can filter and sort by (computed once)."""
        if self._choices is None:
            mx = self.metrics[self.metrics["explainer"] != ""]
            self._choices = {
                "model": sorted(self.metrics["model"].unique().tolist()),
                "method": sorted(mx["explainer"].unique().tolist()),
                "condition": sorted(self.metrics["cond"].unique().tolist(), key=lambda c: (c != "clean", c)),
                "metric": sorted(mx["metric"].unique().tolist()),
            }
        return self._choices

    def listing(self, model: str, method: str, cond: str, metric: str) -> pd.DataFrame:
        """One row per test image: its id, label, truth, whether pixels are stored, and the chosen metric."""
        key = (model, method, cond, metric)
        values = self._columns.get(key)
        if values is None:  # one scan of the metric rows per filter, then cached (pages stay fast)
            m = self.metrics
            sel = m[
                (m["model"] == model)
                & (m["explainer"] == method)
                & (m["cond"] == cond)
                & (m["metric"] == metric)
            ]
            values = dict(zip(sel["sample_id"], sel["value"], strict=True))
            with self._lock:
                self._columns[key] = values
        out = self.samples[["sample_id", "label", "has_truth", "n_points"]].copy()
        out["index"] = range(len(out))
        out["pixels"] = [s in self.pixels for s in out["sample_id"]]
        out["value"] = [values.get(s, math.nan) for s in out["sample_id"]]
        return out

    def sample_metrics(self, sample_id: str) -> pd.DataFrame:
        """Every metric row of one image (map metrics), as ``model, explainer, cond, metric, value``."""
        m = self.metrics
        rows = m[(m["sample_id"] == sample_id) & (m["explainer"] != "")]
        return rows[["model", "explainer", "cond", "metric", "value"]].sort_values(
            ["model", "explainer", "cond", "metric"]
        )
