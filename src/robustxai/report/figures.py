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

from robustxai.report.tables import (
    CLEAN,
    RANDOM_EXPLAINER,
    Condition,
    attacked_conditions,
    condition_label,
    format_epsilon,
    select_condition,
)

logger = logging.getLogger(__name__)

#: Perceptually uniform colormap for explanation maps.
MAP_CMAP = "inferno"
#: At most this many figure samples are drawn (rows grow with samples × models).
MAX_GRID_SAMPLES = 6
_DPI = 100
_MASK_COLOR = "#00e5ff"
_POINT_COLOR = "#ff2d55"


def _plain(text: str) -> str:
    """Escape ``$`` so that names are never parsed as mathtext."""
    return str(text).replace("$", r"\$")


def _save(fig: Figure, path: Path) -> Path:
    """Save a figure as PNG without a timestamp or other run-dependent metadata."""
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    logger.info("wrote %s", path)
    return path


def minmax_normalise(array: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1]; constant or empty maps become zeros; NaN becomes 0."""
    arr = np.nan_to_num(np.asarray(array, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if arr.size == 0:
        return arr
    low, high = float(arr.min()), float(arr.max())
    return (arr - low) / (high - low) if high > low else np.zeros_like(arr)


def _image_for_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Turn a ``[C, H, W]`` image into something ``imshow`` draws, with its colormap."""
    img = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0.0, 1.0)
    if img.ndim == 2:
        return img, "gray"
    if img.shape[0] == 1:
        return img[0], "gray"
    return np.transpose(img[:3], (1, 2, 0)), None


def _bare(ax: Any) -> None:
    """Remove ticks and frame but keep the axis labels."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _draw_points(ax: Any, points: np.ndarray | None, on_map: bool) -> None:
    """Overlay expert points: red crosses on the image, hollow cyan circles on maps."""
    if points is None or len(points) == 0:
        return
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if on_map:
        ax.scatter(
            pts[:, 0], pts[:, 1], s=30, marker="o", facecolors="none", edgecolors=_MASK_COLOR, linewidths=1.2
        )
    else:
        ax.scatter(pts[:, 0], pts[:, 1], s=28, marker="x", c=_POINT_COLOR, linewidths=1.2)


def _find_map(maps: pd.DataFrame, model: str, explainer: str, sample_id: str, cond: Condition) -> Any:
    rows = select_condition(maps, cond)
    rows = rows[
        (rows["model"] == model) & (rows["explainer"] == explainer) & (rows["sample_id"] == sample_id)
    ]
    return None if rows.empty else rows["map"].iloc[0]


def grid_figure(
    samples: dict[str, dict[str, Any]],
    maps: pd.DataFrame,
    primary: Condition | None,
    path: Path,
) -> Path | None:
    """Draw the explanation grid: one row per figure sample × model.

    The first column is the original image with the ground-truth mask outline and the expert points; then,
    for each explainer, the model's map on the clean image and under the primary attack, each min-max
    normalised (expert points overlaid as small circles). The random-map baseline is not drawn.

    Args:
        samples: ``Store.figure_samples()``.
        maps: ``Store.figure_maps()``.
        primary: The primary attack condition, or ``None`` (then only clean maps are drawn).
        path: Where to write the PNG.

    Returns:
        ``path``, or ``None`` when there is nothing to draw.
    """
    if not samples:
        return None
    sample_ids = sorted(samples)[:MAX_GRID_SAMPLES]
    maps = maps[maps["explainer"] != RANDOM_EXPLAINER] if not maps.empty else maps
    models = sorted({str(m) for m in maps["model"]}) if not maps.empty else [""]
    explainers = sorted({str(e) for e in maps["explainer"]}) if not maps.empty else []
    conditions: list[Condition] = [(CLEAN, 0.0)] + ([primary] if primary is not None else [])
    n_rows, n_cols = len(sample_ids) * len(models), 1 + len(explainers) * len(conditions)
    fig = Figure(figsize=(1.9 * n_cols + 0.6, 1.95 * n_rows + 0.4))
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    for s_idx, sid in enumerate(sample_ids):
        sample = samples[sid]
        for m_idx, model in enumerate(models):
            row = s_idx * len(models) + m_idx
            ax = axes[row, 0]
            img, cmap = _image_for_display(sample["image"])
            ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            mask = sample.get("mask")
            if mask is not None and np.asarray(mask).any() and not np.asarray(mask).all():
                ax.contour(
                    np.asarray(mask, dtype=np.float64), levels=[0.5], colors=_MASK_COLOR, linewidths=1.2
                )
            _draw_points(ax, sample.get("points"), on_map=False)
            _bare(ax)
            short = sid.rsplit("/", 1)[-1].rsplit(".", 1)[0]  # "fracture/synth-1-7.png" → "synth-1-7"
            ax.set_ylabel(_plain(f"{short}\n{model}"), fontsize=8)
            if row == 0:
                ax.set_title("image + truth", fontsize=8)
            col = 1
            for explainer in explainers:
                for cond in conditions:
                    ax = axes[row, col]
                    col += 1
                    _bare(ax)
                    if row == 0:
                        ax.set_title(_plain(f"{explainer}\n{condition_label(*cond)}"), fontsize=8)
                    found = _find_map(maps, model, explainer, sid, cond)
                    if found is None:
                        ax.text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=8, transform=ax.transAxes)
                        continue
                    ax.imshow(
                        minmax_normalise(found), cmap=MAP_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest"
                    )
                    _draw_points(ax, sample.get("points"), on_map=True)
    fig.suptitle(
        "Explanation maps (min-max normalised; red × / cyan ○ = expert points, cyan line = truth mask)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.35 / fig.get_figheight()))  # room for the title
    return _save(fig, path)


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
    fig = Figure(figsize=(max(4.2, 3.6 * len(attacks)), 3.4))
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
    axes[-1].legend(fontsize=8, loc="best", title="model (dashed = clean)", title_fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
