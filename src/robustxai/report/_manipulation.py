"""The explanation-manipulation section of a report (trustworthiness paper, Table 1 and Figs. 2–3).

Everything is computed from the run store alone: the ``metrics`` rows written by
:mod:`robustxai.audit._stages_manip` (conditions ``"manipulate:<attacked method>"``) and its ``figure_maps``.
:func:`manipulation_section` writes ``tables/manipulation.csv`` and the figures, and returns plain data
(strings, lists, paths) that the HTML report can render.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from robustxai._errors import RobustXAIError
from robustxai.metrics import auc
from robustxai.report._figures import save_png, set_margins
from robustxai.report._mosaic import Tile, tile_grid
from robustxai.report._numbers import DASH, fmt_number
from robustxai.report._tables import TABLES_DIR, write_table_csv
from robustxai.results._schema import (
    ADV_SCORE,
    CLEAN_SCORE,
    LABEL,
    MANIPULATION_IMAGE,
    MANIPULATION_ORIGINAL,
    MANIPULATION_PREFIX,
    MANIPULATION_TARGET,
    MetricKey,
)
from robustxai.results._store import STORE_FILE, Store

logger = logging.getLogger(__name__)

PREFIX = MANIPULATION_PREFIX
ORIGINAL = MANIPULATION_ORIGINAL
IMAGE = MANIPULATION_IMAGE
TARGET = MANIPULATION_TARGET
#: Outline of the manipulation's target square.
TARGET_COLOR = "#39ff14"
COLUMNS = [
    "model",
    "method",
    "attacked_via",
    "target_ssim",
    "map_ssim",
    "map_mse",
    "map_pearson",
    "image_ssim",
    "unsuccessful_ratio",
    "peak_in_target",
    "prediction_unchanged",
    "n",
]
_MAP_METRICS = ("target_ssim", "map_ssim", "map_mse", "map_pearson", "unsuccessful", "peak_in_target")


def manipulation_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The store's metric rows of the manipulation stage, with an ``attacked_via`` column."""
    if metrics.empty:
        return metrics.assign(attacked_via=pd.Series(dtype=str))
    rows = metrics[metrics["condition"].astype(str).str.startswith(PREFIX)]
    rows = rows[rows["condition"] != ORIGINAL]
    return rows.assign(attacked_via=rows["condition"].str.slice(len(PREFIX)))


def manipulation_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Means per model × evaluated method × attacked method (``COLUMNS``; ratios in [0, 1]).

    ``image_ssim`` and ``prediction_unchanged`` belong to the attacked images, so every evaluated method of
    one attacked method shares them. ``n`` counts the images with a defined ``target_ssim``.
    """
    rows = manipulation_rows(metrics)
    maps = rows[rows["explainer"] != ""]
    if maps.empty:
        return pd.DataFrame(columns=COLUMNS)
    per_image = rows[rows["explainer"] == ""].groupby(["model", "attacked_via", "metric"])["value"].mean()
    wide = maps.pivot_table(
        index=["model", "explainer", "attacked_via"], columns="metric", values="value", aggfunc="mean"
    )
    counts = maps[maps["metric"] == "target_ssim"].groupby(["model", "explainer", "attacked_via"])["value"]
    out = []
    for (model, method, via), r in wide.iterrows():
        out.append(
            {
                "model": model,
                "method": method,
                "attacked_via": via,
                **{m: float(r.get(m, math.nan)) for m in _MAP_METRICS if m != "unsuccessful"},
                "image_ssim": float(per_image.get((model, via, "image_ssim"), math.nan)),
                "unsuccessful_ratio": float(r.get("unsuccessful", math.nan)),
                "prediction_unchanged": float(per_image.get((model, via, "prediction_unchanged"), math.nan)),
                "n": int(counts.count().get((model, method, via), 0)),
            }
        )
    frame = pd.DataFrame(out, columns=COLUMNS)
    return frame.sort_values(["model", "attacked_via", "method"], kind="mergesort").reset_index(drop=True)


def auc_change(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean AUC over labels (classes) on clean and manipulated images per model × attacked method.

    Columns ``model, attacked_via, auc_clean, auc_attacked, auc_change_pct`` (change relative to clean, in
    %, as the paper's Table 1). Labels whose AUC is undefined on these images (one class only) are skipped.
    """
    rows = manipulation_rows(metrics)
    rows = rows[rows["explainer"] == ""]
    out = []
    for (model, via), g in rows.groupby(["model", "attacked_via"], sort=True):
        wide = g.pivot_table(index="sample_id", columns="metric", values="value")
        k = sum(1 for c in wide.columns if MetricKey.parse(c).name == LABEL)
        clean, adv = [], []
        for j in range(k):
            cols = [str(MetricKey(name, str(j))) for name in (LABEL, CLEAN_SCORE, ADV_SCORE)]
            if not all(c in wide.columns for c in cols):
                continue
            y = torch.tensor(wide[cols[0]].to_numpy() > 0.5).long()
            clean.append(float(auc(torch.tensor(wide[cols[1]].to_numpy()), y)[0]))
            adv.append(float(auc(torch.tensor(wide[cols[2]].to_numpy()), y)[0]))
        c, a = _nanmean(clean), _nanmean(adv)
        change = 100.0 * (a - c) / c if c and not math.isnan(c) else math.nan
        out.append((model, via, c, a, change))
    return pd.DataFrame(out, columns=["model", "attacked_via", "auc_clean", "auc_attacked", "auc_change_pct"])


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else math.nan


def table1(table: pd.DataFrame, aucs: pd.DataFrame, model: str) -> dict[str, Any]:
    """The paper's Table 1 for one model (each attacked method scored on its own map).

    Columns are the attacked methods; rows the AUC on attacked images (change in %; only when the task has
    one), the share of unchanged predictions, the unsuccessful attack ratio, SSIM(target, map), the image SSIM
    and the number of images.
    """
    own = table[(table["model"] == model) & (table["method"] == table["attacked_via"])]
    methods = list(own["attacked_via"])
    a = aucs[aucs["model"] == model].set_index("attacked_via")
    rows = [
        ["prediction unchanged (%)"] + [fmt_number(v, 1, 100.0) for v in own["prediction_unchanged"]],
        ["unsuccessful attack ratio (%)"] + [fmt_number(v, 1, 100.0) for v in own["unsuccessful_ratio"]],
        ["SSIM(target, map)"] + [fmt_number(v) for v in own["target_ssim"]],
        ["map peak inside the target (%)"] + [fmt_number(v, 1, 100.0) for v in own["peak_in_target"]],
        ["SSIM(image, attacked image)"] + [fmt_number(v, 3) for v in own["image_ssim"]],
        ["images (n)"] + [str(int(v)) for v in own["n"]],
    ]
    defined = [m for m in methods if m in a.index and not math.isnan(float(a.at[m, "auc_attacked"]))]
    if defined:  # a task without per-label scores (or with one class only) has no AUC: no row of dashes
        rows.insert(
            0,
            ["AUC (change %)"]
            + [
                f"{fmt_number(a.at[m, 'auc_attacked'], 3)} "
                f"({fmt_number(a.at[m, 'auc_change_pct'], 1, unit=' %')})"
                if m in defined
                else DASH
                for m in methods
            ],
        )
    return {"columns": ["", *methods], "rows": rows}


def transfer_matrix(table: pd.DataFrame, model: str, value: str = "target_ssim") -> pd.DataFrame:
    """Rows: the method attacked; columns: the method evaluated on those images; cells: mean ``value``."""
    rows = table[table["model"] == model]
    return rows.pivot_table(index="attacked_via", columns="method", values=value, aggfunc="mean")


def _get(maps: pd.DataFrame, cond: str, explainer: str, sid: str) -> np.ndarray | None:
    hit = maps[(maps["condition"] == cond) & (maps["explainer"] == explainer) & (maps["sample_id"] == sid)]
    return None if hit.empty else np.asarray(hit["map"].iloc[0])


def grid_figure(
    maps: pd.DataFrame, model: str, path: Path, samples: dict[str, dict[str, Any]] | None = None
) -> Path | None:
    """Fig. 2 for one model and its first figure sample.

    The first column holds the original image (when the run stored it) and, beside the tampered maps, the
    target map they should match; then one column per method. Rows: original maps, attacked images,
    tampered maps, and the transfer row (every method's map on the image attacked via Integrated Gradients,
    else via the attacked method with the most evaluated methods). The target square is outlined (green)
    on the original image, the attacked images and every map after the attack. Maps are min-max scaled
    (colour bar: importance), images grey in [0, 1]; drawn as one mosaic (:func:`.mosaic.tile_grid`).
    """
    m = maps[maps["model"] == model]
    attacked = sorted({c[len(PREFIX) :] for c in m["condition"] if c.startswith(PREFIX) and c != ORIGINAL})
    if not attacked:
        return None
    sid = sorted(m[m["explainer"] == IMAGE]["sample_id"])[0]
    spread = {
        a: m[(m["condition"] == PREFIX + a) & (m["sample_id"] == sid)]["explainer"].nunique()
        for a in attacked
    }
    via = "integrated_gradients" if spread.get("integrated_gradients", 0) > 2 else max(spread, key=spread.get)  # type: ignore[arg-type]
    columns = attacked + sorted(
        {e for e in m[m["condition"] == PREFIX + via]["explainer"] if e not in (IMAGE, *attacked)}
    )
    labels = ["original map", "attacked image", "tampered map", f"on image attacked\nvia {via}"]
    m = m[m["sample_id"] == sid]
    target = _get(m, ORIGINAL, TARGET, sid)
    square = None if target is None else np.asarray(target) > 0.5 * float(np.max(target))
    cells = [
        [_get(m, ORIGINAL, method, sid) for method in columns],
        [_get(m, PREFIX + method, IMAGE, sid) if method in attacked else None for method in columns],
        [_get(m, PREFIX + method, method, sid) if method in attacked else None for method in columns],
        [_get(m, PREFIX + via, method, sid) for method in columns],
    ]
    tiles: list[list[Tile | None]] = [
        [
            None
            if c is None
            else Tile(_gray(c), "gray", 0.0, 1.0, mask=square, mask_color=TARGET_COLOR)
            if i == 1
            else Tile(c, "inferno", mask=square if i > 1 else None, mask_color=TARGET_COLOR)
            for c in row
        ]
        for i, row in enumerate(cells)
    ]
    image = (samples or {}).get(sid, {}).get("image")
    first: list[Tile | None] = [
        Tile(_gray(image), "gray", 0.0, 1.0, mask=square, mask_color=TARGET_COLOR) if image is not None
        else Tile(text="image\nnot stored"),
        None,
        None if target is None else Tile(np.asarray(target), "inferno", mask=square, mask_color=TARGET_COLOR),
        None,
    ]  # fmt: skip
    tiles = [[f, *row] for f, row in zip(first, tiles, strict=True)]
    fig = tile_grid(
        tiles,
        col_titles=["image / target", *(method.replace("$", r"\$") for method in columns)],
        row_labels=labels,
        title=f"Manipulated explanations — {model} (sample {sid.rsplit('/', 1)[-1]}; green square = target)",
        cell_inches=1.6,
        font_size=10,
        colorbar=("inferno", "map importance (min-max)"),
    )
    return save_png(fig, path)


def _gray(image: Any) -> np.ndarray:
    """A ``[C, H, W]`` (or ``[H, W]``) image as one grey ``[H, W]`` plane in [0, 1] (channels averaged)."""
    arr = np.asarray(image, dtype=np.float64)
    return np.clip(arr.mean(axis=0) if arr.ndim == 3 else arr, 0.0, 1.0)


def boxplot_figure(metrics: pd.DataFrame, model: str, path: Path) -> Path | None:
    """Fig. 3 for one model: SSIM of image pairs (blue) next to SSIM of map pairs (red) per method."""
    rows = manipulation_rows(metrics)
    rows = rows[rows["model"] == model]
    methods = sorted(set(rows["attacked_via"]))
    if not methods:
        return None
    img = [
        rows[(rows["attacked_via"] == a) & (rows["metric"] == "image_ssim")]["value"].dropna()
        for a in methods
    ]
    own = [
        rows[(rows["attacked_via"] == a) & (rows["explainer"] == a) & (rows["metric"] == "map_ssim")][
            "value"
        ].dropna()
        for a in methods
    ]
    fig = Figure(figsize=(1.3 * len(methods) + 2.0, 3.4))
    ax = fig.subplots()
    pos = np.arange(len(methods)) * 3.0
    for data, offset, color in ((img, -0.55, "#1f77b4"), (own, 0.55, "#d62728")):
        bp = ax.boxplot([d.to_numpy() for d in data], positions=pos + offset, widths=0.9, patch_artist=True)
        for box in bp["boxes"]:
            box.set_facecolor(color)
            box.set_alpha(0.5)
        ax.plot(pos + offset, [d.mean() if len(d) else np.nan for d in data], "s", color=color, markersize=4)
    ax.set_xticks(pos)
    ax.set_xticklabels([a.replace("$", r"\$") for a in methods], fontsize=8, rotation=20)
    ax.set_ylabel("SSIM")
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(f"{model}: original vs attacked — images (blue), maps (red)", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    longest = max(len(a) for a in methods)  # labels rotated by 20°: room below for the longest
    set_margins(fig, left=0.6, right=0.15, bottom=0.2 + 0.02 * longest, top=0.35)
    return save_png(fig, path)


def manipulation_section(
    run_dir: str | Path,
    metrics: pd.DataFrame | None = None,
    maps: pd.DataFrame | None = None,
    samples: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """Write ``tables/manipulation.csv`` and the figures; return what the HTML report shows.

    Args:
        run_dir: The run directory holding ``results.sqlite``.
        metrics: The store's ``metrics`` table when the caller has already read it (else it is read here).
        maps: The store's figure maps, likewise.
        samples: The store's figure samples (the original image of Fig. 2), likewise.

    Returns:
        ``None`` when the run has no manipulation rows; else a dict with ``csv`` (path), ``columns`` and
        ``rows`` (the CSV as strings), ``table1`` and ``transfer`` (per model: ``columns`` and ``rows``),
        ``figures`` (per model: ``grid`` and ``boxplot`` PNG paths or ``None``) and ``how_to_read``.

    Raises:
        RobustXAIError: If there is no store.
    """
    run_dir = Path(run_dir)
    if not (run_dir / STORE_FILE).is_file():
        raise RobustXAIError(f"no run store at {run_dir / STORE_FILE}: run the audit first")
    if metrics is None or maps is None:
        with Store(run_dir / STORE_FILE, readonly=True) as store:
            metrics = store.table("metrics")
            maps = store.figure_maps()
            samples = store.figure_samples()
    table = manipulation_table(metrics)
    if table.empty:
        return None
    csv = write_table_csv(table, run_dir / TABLES_DIR / "manipulation.csv")  # as run_tables.write_tables
    aucs = auc_change(metrics)
    section: dict[str, Any] = {"csv": csv, "columns": COLUMNS, "table1": {}, "transfer": {}, "figures": {}}
    section["rows"] = [[_cell(v) for v in r] for r in table.itertuples(index=False)]
    for model in sorted(set(table["model"])):
        section["table1"][model] = table1(table, aucs, model)
        tm = transfer_matrix(table, model)
        section["transfer"][model] = {
            "columns": ["attacked via ↓ / evaluated →", *map(str, tm.columns)],
            "rows": [
                [str(via), *(fmt_number(v) for v in r)]
                for via, r in zip(tm.index, tm.to_numpy(), strict=True)
            ],
        }
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in model)
        fig_dir = run_dir / "figures"
        section["figures"][model] = {
            "grid": grid_figure(maps, model, fig_dir / f"manipulation_grid_{safe}.png", samples)
            if not maps.empty
            else None,
            "boxplot": boxplot_figure(metrics, model, fig_dir / f"manipulation_ssim_{safe}.png"),
        }
    section["how_to_read"] = (
        "An attacker perturbed each image so that its explanation map moves to a square in the corner "
        "farthest from the finding while the prediction stays the same. SSIM(target, map) ≥ 0.6 counts as a "
        "successful manipulation (the paper's threshold); the unsuccessful ratio is the share below it. "
        "That SSIM is dominated by the area outside a small target, so a sparse map can pass it while "
        "pointing elsewhere: the row 'map peak inside the target' says how often the map's maximum really "
        "moved into the square. "
        "Image SSIM near 1 means the perturbation is imperceptible. Maps are computed by the registered "
        "explainers on the real model, never on the attack's smooth surrogate. The transfer matrix shows "
        "SSIM(target, map) for methods evaluated on images attacked through another method."
    )
    return section


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return fmt_number(v, 3)
    return str(v)
