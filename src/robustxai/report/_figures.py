"""Figures of a run: the explanation-map grid and the robustness plot.

Figures are drawn on standalone :class:`matplotlib.figure.Figure` objects (Agg canvas, no pyplot, no global
state), so building a report never opens a window and the same store always gives the same PNG bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from robustxai._arrays import minmax_array
from robustxai._atomic import replacing
from robustxai.report._mosaic import Tile, tile_grid
from robustxai.report._tables import (
    RANDOM_EXPLAINER,
    attacked_conditions,
    condition_label,
    format_epsilon,
    select_condition,
)
from robustxai.results._schema import CLEAN, Condition

logger = logging.getLogger(__name__)

#: Perceptually uniform colormap for explanation maps.
MAP_CMAP = "inferno"
#: At most this many figure samples are drawn (rows grow with samples × models).
MAX_GRID_SAMPLES = 6
_DPI = 100


def _plain(text: str) -> str:
    """Escape ``$`` so that names are never parsed as mathtext."""
    return str(text).replace("$", r"\$")


def column_title(name: str, width: int = 10) -> str:
    """A method's name as a column title, broken after its underscores into lines of about ``width``.

    Grid cells are ≈ 1 inch wide, so ``integrated_gradients`` or ``attention_rollout`` on one line ran into
    their neighbours' titles; the name stays exact (``integrated_`` / ``gradients``).
    """
    parts = _plain(name).split("_")
    lines, current = [], ""
    for i, part in enumerate(parts):
        piece = part + ("_" if i < len(parts) - 1 else "")
        if current and len(current) + len(piece) > width:
            lines.append(current)
            current = piece
        else:
            current += piece
    return "\n".join([*lines, current])


def save_png(fig: Figure, path: Path) -> Path:
    """Save a figure as PNG without a timestamp or other run-dependent metadata.

    zlib level 3 instead of the default 6 halves the encoding time of a large grid for files ≈ 9 % larger.
    """
    FigureCanvasAgg(fig)
    with replacing(path) as tmp:  # never written in place (a hard link named path keeps its bytes)
        fig.savefig(
            tmp, format="png", dpi=_DPI, metadata={"Software": None}, pil_kwargs={"compress_level": 3}
        )
    logger.info("wrote %s", path)
    return path


def set_margins(
    fig: Figure, *, left: float, right: float, bottom: float, top: float, wspace: float = 0.2
) -> None:
    """Fixed margins in inches: what ``tight_layout`` would find for these plots, without its extra draw."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, wspace=wspace)


def minmax_normalise(array: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1]; constant or empty maps become zeros; NaN becomes 0."""
    arr = np.nan_to_num(np.asarray(array, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return minmax_array(arr)


def _image_for_display(image: np.ndarray) -> tuple[np.ndarray, str]:
    """Turn a ``[C, H, W]`` image into ``[H, W]`` grey or ``[H, W, 3]`` RGB in [0, 1], with its colormap."""
    img = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0.0, 1.0)
    if img.ndim == 2:
        return img, "gray"
    if img.shape[0] == 1:
        return img[0], "gray"
    return np.transpose(img[:3], (1, 2, 0)), "gray"


def _maps_by_key(maps: pd.DataFrame, cond: Condition) -> dict[tuple[str, str, str], Any]:
    """The first stored map of each (model, explainer, sample) under one condition."""
    rows = select_condition(maps, cond)
    found: dict[tuple[str, str, str], Any] = {}
    for key in zip(rows["model"], rows["explainer"], rows["sample_id"], rows["map"], strict=True):
        found.setdefault((str(key[0]), str(key[1]), str(key[2])), key[3])
    return found


#: Width of the report's content column in inches at :data:`_DPI` (max-width 1180 px less padding): a grid
#: drawn at this width is shown at its natural size, so its labels keep their point size.
PAGE_INCHES = 11.4
_GRID_FONT = 11
#: The smallest cell (inches); more explainers than fit at this size are split over several figures.
_MIN_CELL = 1.1
_LABEL_INCHES = 2.1


def _prediction_labels(
    predictions: pd.DataFrame, classes: list[str] | None
) -> dict[tuple[str, str, str], str]:
    """``(model, condition, sample) → "fracture (correct)"``: the prediction and whether it is right."""
    out: dict[tuple[str, str, str], str] = {}
    if predictions is None or predictions.empty:
        return out
    names = classes or []
    for r in predictions.itertuples(index=False):
        pred = int(r.pred) if r.pred == r.pred else -1
        shown = names[pred] if 0 <= pred < len(names) else str(pred)
        verdict = "correct" if r.correct == 1 else "wrong"
        key = (str(r.model), f"{r.condition}@{round(float(r.epsilon), 9)}", str(r.sample_id))
        out[key] = f"{shown} ({verdict})"
    return out


def _true_label(predictions: pd.DataFrame, sid: str, classes: list[str] | None) -> str:
    rows = predictions[predictions["sample_id"] == sid] if predictions is not None else predictions
    if rows is None or rows.empty:
        return "?"
    label = int(rows["label"].iloc[0])
    return classes[label] if classes and 0 <= label < len(classes) else str(label)


def grid_figures(
    samples: dict[str, dict[str, Any]],
    maps: pd.DataFrame,
    primary: Condition | None,
    fig_dir: Path,
    predictions: pd.DataFrame | None = None,
    classes: list[str] | None = None,
) -> dict[str, Path]:
    """Draw the explanation grid, one figure per model (``fig_dir/grid_<model>.png``).

    More explainers than fit the page at a legible size are split over several figures per model
    (``grid_<model>_2.png``, …; keys ``"<model> (2/2)"``).

    Each figure sample gets a row on the clean image and a row under the primary attack; columns are the
    image (expert mask outline and hollow rings at the expert points) and one map per explainer, min-max
    normalised, with a 0–1 colour bar. Row labels give the sample, its true class and the model's prediction
    with whether it is correct. The figure is drawn at the report's page width, so it is shown unscaled and
    its 11-point labels stay legible. The random-map baseline is not drawn. Each grid is one mosaic
    (:func:`robustxai.report._mosaic.tile_grid`), not one axes per image, which keeps many maps cheap.

    Args:
        samples: ``Store.figure_samples()``.
        maps: ``Store.figure_maps()``.
        primary: The primary attack condition, or ``None`` (then only clean maps are drawn).
        fig_dir: Where to write the PNGs.
        predictions: The store's predictions (for the prediction in each row label).
        classes: The data set's class names.

    Returns:
        The written path of each model's grid (empty when there is nothing to draw).
    """
    if not samples:
        return {}
    sample_ids = sorted(samples)[:MAX_GRID_SAMPLES]
    maps = maps[maps["explainer"] != RANDOM_EXPLAINER] if not maps.empty else maps
    models = sorted({str(m) for m in maps["model"]}) if not maps.empty else [""]
    conditions: list[Condition] = [(CLEAN, 0.0)] + ([primary] if primary is not None else [])
    found = {cond: _maps_by_key(maps, cond) if not maps.empty else {} for cond in conditions}
    # Explainers with a map under a drawn condition (the manipulation stage's own rows are not columns).
    explainers = sorted({e for hits in found.values() for _, e, _ in hits})
    preds = _prediction_labels(predictions, classes) if predictions is not None else {}
    per_figure = max(1, int((PAGE_INCHES - _LABEL_INCHES - 1.1) / _MIN_CELL) - 1)
    chunks = [explainers[i : i + per_figure] for i in range(0, len(explainers), per_figure)] or [[]]
    cell = min(1.9, max(_MIN_CELL, (PAGE_INCHES - _LABEL_INCHES - 1.1) / (1 + max(map(len, chunks)))))
    out: dict[str, Path] = {}
    for model in models:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in model) or "model"
        for part, chunk in enumerate(chunks, start=1):
            rows, labels = _grid_rows(
                model, chunk, sample_ids, samples, conditions, found, preds, predictions, classes
            )
            more = f" ({part}/{len(chunks)})" if len(chunks) > 1 else ""
            fig = tile_grid(
                rows,
                col_titles=["image +\ntruth"] + [column_title(e) for e in chunk],
                row_labels=labels,
                title=_plain((f"Explanation maps of {model}" if model else "Explanation maps") + more),
                cell_inches=cell,
                dpi=_DPI,
                font_size=_GRID_FONT,
                label_inches=_LABEL_INCHES,
                colorbar=(MAP_CMAP, "importance (min-max normalised)"),
            )
            name = model + more
            out[name] = save_png(fig, fig_dir / f"grid_{safe}{f'_{part}' if part > 1 else ''}.png")
    return out


def _grid_rows(
    model: str,
    explainers: list[str],
    sample_ids: list[str],
    samples: dict[str, dict[str, Any]],
    conditions: list[Condition],
    found: dict[Condition, dict[tuple[str, str, str], Any]],
    preds: dict[tuple[str, str, str], str],
    predictions: pd.DataFrame | None,
    classes: list[str] | None,
) -> tuple[list[list[Tile | None]], list[str]]:
    """Tiles and row labels of one model's grid: per sample, a clean row and a row per attacked condition."""
    rows: list[list[Tile | None]] = []
    labels: list[str] = []
    for sid in sample_ids:
        sample = samples[sid]
        img, cmap = _image_for_display(sample["image"])
        points = sample.get("points")
        short = sid.rsplit("/", 1)[-1].rsplit(".", 1)[0]  # "fracture/synth-1-7.png" → "synth-1-7"
        truth = _true_label(predictions, sid, classes) if predictions is not None else "?"
        for i, cond in enumerate(conditions):
            first = Tile(img, cmap, 0.0, 1.0, points, "cross", mask=sample.get("mask")) if i == 0 else None
            row: list[Tile | None] = [first]
            for explainer in explainers:
                hit = found[cond].get((model, explainer, sid))
                row.append(
                    Tile(text="n/a")
                    if hit is None
                    else Tile(minmax_normalise(hit), MAP_CMAP, 0.0, 1.0, points, "circle")
                )
            rows.append(row)
            pred = preds.get((model, f"{cond[0]}@{round(float(cond[1]), 9)}", sid), "not recorded")
            head = f"{_short(short)}\ntrue: {truth}\n" if i == 0 else ""
            labels.append(_plain(f"{head}{condition_label(*cond)}\n→ {pred}"))
    return rows, labels


def _short(name: str, limit: int = 22) -> str:
    """A sample name cut to fit the row-label margin."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def robustness_figure(robustness: pd.DataFrame, clean: pd.DataFrame, path: Path) -> Path | None:
    """Plot accuracy against ε, one panel per attack, one line per model, clean accuracy dashed.

    Each line starts at the model's clean accuracy (ε = 0), so a single-ε attack reads as a drop.

    Args:
        robustness: The robustness table.
        clean: Clean accuracy per model (``model, accuracy, n``).
        path: Where to write the PNG.

    Returns:
        ``path``, or ``None`` when no attack was evaluated.
    """
    if robustness.empty:
        return None
    attacks = sorted({a for a, _ in attacked_conditions(robustness)})
    models = sorted({str(m) for m in robustness["model"]} | {str(m) for m in clean["model"]})
    clean_acc = dict(zip(clean["model"].astype(str), clean["accuracy"].astype(float), strict=True))
    longest = max((len(m) for m in models), default=5)
    legend_w = max(1.5, 0.075 * longest + 0.6)
    panel = min(3.6, max(2.2, (PAGE_INCHES - legend_w - 0.8) / len(attacks)))  # fit the page when possible
    fig = Figure(figsize=(max(4.2, panel * len(attacks)) + legend_w, 3.4))
    axes = np.asarray(fig.subplots(1, len(attacks), squeeze=False, sharey=True))[0]
    colors = [f"C{i % 10}" for i in range(len(models))]
    for ax, attack in zip(axes, attacks, strict=True):
        rows = robustness[robustness["attack"] == attack]
        eps_values = sorted({float(e) for e in rows["epsilon"]})
        for model, color in zip(models, colors, strict=True):
            mrows = rows[rows["model"] == model].sort_values("epsilon")
            base = clean_acc.get(model, float("nan"))
            xs = [0.0, *mrows["epsilon"].astype(float)]
            ys = [100.0 * base, *(100.0 * mrows["adversarial_accuracy"].astype(float))]
            ax.axhline(100.0 * base, color=color, linestyle="--", linewidth=1.0, alpha=0.7)
            ax.plot(xs, ys, marker="o", color=color, linewidth=1.6, label=_plain(model))
        ticks = [0.0, *eps_values]
        positive = [e for e in eps_values if e > 0]
        if positive and max(positive) / min(positive) >= 8:
            # A doubling grid (the attentive-CNN paper's 0.00125 … 0.32) is unreadable on a linear axis;
            # symlog keeps ε = 0 (clean accuracy) on the plot.
            ax.set_xscale("symlog", linthresh=min(positive), linscale=0.5)
            ax.minorticks_off()
        ax.set_xticks(ticks)
        ax.set_xticklabels(
            [format_epsilon(e) for e in ticks], fontsize=8, rotation=45 if len(ticks) > 5 else 0
        )
        ax.set_title(_plain(attack), fontsize=10)
        ax.set_xlabel("ε", fontsize=9)
        ax.set_ylim(-2, 102)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    # The legend sits outside the axes, right of the last panel, so it never covers a line.
    axes[-1].legend(
        fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
        title="model (dashed = clean)", title_fontsize=7,
    )  # fmt: skip
    rotated = any(len(ax.get_xticks()) > 5 for ax in axes)
    set_margins(fig, left=0.65, right=0.15 + legend_w, bottom=0.75 if rotated else 0.5, top=0.35, wspace=0.08)
    return save_png(fig, path)
