"""Image grids drawn as one mosaic: many small images in a single axes.

Why: drawn as one matplotlib ``Axes`` per image, a grid costs about 10–30 ms per image to build, lay out and
render, and the smoke audit's explanation grid alone has 54 images — the figures were the largest fixed cost
of a small audit. Here the tiles are composed into one RGB array (colormaps applied with numpy), drawn by a
single ``imshow``, and the titles, row labels, expert points and mask outlines are overlaid in that axes'
pixel coordinates. The result looks like the per-axes grid and is as deterministic (same tiles, same bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.transforms import offset_copy

#: Outline of ground-truth masks and hollow circles of expert points on maps.
MASK_COLOR = "#00e5ff"
#: Crosses of expert points on images.
POINT_COLOR = "#ff2d55"
_FONT = 8


@dataclass
class Tile:
    """One cell of a grid.

    Attributes:
        image: ``[H, W]`` values drawn with ``cmap``, or ``[H, W, 3]`` RGB in [0, 1]; ``None``: an empty cell.
        cmap: Colormap of a 2-D image.
        vmin: Value mapped to the colormap's low end; ``None`` (with ``vmax``): the image's own minimum.
        vmax: Value mapped to the colormap's high end; ``None``: the image's own maximum.
        points: Expert points ``[N, 2]`` as (x, y) pixel coordinates.
        point_style: ``"cross"`` (hollow red ring, on images) or ``"circle"`` (hollow cyan ring, on maps).
        mask: Boolean ``[H, W]`` mask whose outline is drawn (when it is neither empty nor full).
        text: Text centred in the cell (e.g. ``"n/a"``).
        mask_color: Colour of the mask outline.
    """

    image: np.ndarray | None = None
    cmap: str = "gray"
    vmin: float | None = None
    vmax: float | None = None
    points: np.ndarray | None = None
    point_style: Literal["cross", "circle"] = "circle"
    mask: np.ndarray | None = None
    text: str | None = None
    mask_color: str = MASK_COLOR


def _rgb(tile: Tile) -> np.ndarray:
    """The tile's image as 8-bit RGB ``[H, W, 3]`` (what ``imshow`` paints; an eighth of float64 memory).

    Pixels without a finite value (NaN, ±inf) are white, as ``imshow`` leaves them transparent on the white
    figure, and they take no part in the tile's own minimum and maximum.
    """
    img = np.asarray(tile.image, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3]
        bad = ~np.isfinite(img).all(axis=-1)
        rgb = np.round(np.clip(np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0) * 255)
    else:
        bad = ~np.isfinite(img)
        values = img[~bad]
        low = (float(values.min()) if values.size else 0.0) if tile.vmin is None else tile.vmin
        high = (float(values.max()) if values.size else 0.0) if tile.vmax is None else tile.vmax
        scaled = np.clip((np.where(bad, low, img) - low) / (high - low), 0.0, 1.0) if high > low else None
        rgb = np.asarray(colormaps[tile.cmap](np.zeros_like(img) if scaled is None else scaled, bytes=True))
        rgb = rgb[..., :3]
    out = rgb.astype(np.uint8)
    out[bad] = 255
    return out


def tile_grid(
    tiles: Sequence[Sequence[Tile | None]],
    *,
    col_titles: Sequence[str] = (),
    row_labels: Sequence[str] = (),
    title: str = "",
    cell_inches: float = 1.9,
    dpi: int = 100,
    font_size: float = _FONT,
    label_inches: float | None = None,
    colorbar: tuple[str, str] | None = None,
) -> Figure:
    """Draw a rows × columns grid of tiles in one axes.

    Args:
        tiles: Rows of cells (all rows as long as the first); ``None`` leaves a cell blank.
        col_titles: Title above each column ('' or missing: none).
        row_labels: Label left of each row, written upwards ('' or missing: none).
        title: The figure's title.
        cell_inches: Width of one cell with its share of the gap between cells.
        dpi: Resolution of the figure.
        font_size: Size in points of the titles, labels and cell texts.
        label_inches: Width of a left margin where row labels are written horizontally (``None``: upwards,
            in a narrow margin).
        colorbar: ``(cmap, label)`` of a colour bar for values 0–1, drawn right of the grid.

    Returns:
        The figure (no canvas attached; the caller saves it).
    """
    n_rows, n_cols = len(tiles), max((len(r) for r in tiles), default=0)
    shapes = [np.shape(t.image)[:2] for row in tiles for t in row if t is not None and t.image is not None]
    h = max((s[0] for s in shapes), default=32)
    w = max((s[1] for s in shapes), default=32)
    gap = max(1, round(0.1 * max(h, w)))
    height, width = n_rows * (h + gap) - gap, n_cols * (w + gap) - gap
    canvas = np.full((max(height, 1), max(width, 1), 3), 255, dtype=np.uint8)  # white gaps
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            if tile is not None and tile.image is not None:
                rgb = _rgb(tile)
                y0, x0 = r * (h + gap), c * (w + gap)
                canvas[y0 : y0 + rgb.shape[0], x0 : x0 + rgb.shape[1]] = rgb

    inch = cell_inches / (w + gap)  # inches per canvas pixel
    line = font_size / 72 * 1.25  # inches of one text line
    left = (label_inches if label_inches is not None else 2 * line + 0.1) if any(row_labels) else 0.1
    lines = max((str(t).count("\n") + 1 for t in col_titles if t), default=0)
    top = (0.35 if title else 0.1) + (lines * line + 0.08 if lines else 0.0)
    bottom, right = 0.1, (1.0 if colorbar else 0.1)
    fig_w, fig_h = left + width * inch + right, top + height * inch + bottom
    title_w = 0.6 * (font_size + 1) / 72 * len(title) + 0.2  # a rough width of the title, in inches
    if title_w > fig_w:  # widen the figure so the title fits; the grid stays centred
        left, fig_w = left + (title_w - fig_w) / 2, title_w
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, width * inch / fig_w, height * inch / fig_h))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()

    _draw_labels(
        fig, ax, col_titles, row_labels, h + gap, w + gap, (h, w), font_size, label_inches is not None
    )
    _draw_overlays(ax, tiles, h + gap, w + gap, (h, w), font_size)
    ax.set_xlim(-0.5, width - 0.5)  # overlays never widen the view beyond the mosaic
    ax.set_ylim(height - 0.5, -0.5)
    if title:
        fig.suptitle(title, fontsize=font_size + 1, y=1.0 - 0.08 / fig_h, va="top")
    if colorbar:
        _colorbar(fig, (left + width * inch + 0.15) / fig_w, bottom / fig_h, height * inch / fig_h, colorbar)
    return fig


def _draw_labels(
    fig: Figure,
    ax: Axes, col_titles: Sequence[str], row_labels: Sequence[str], row_step: int, col_step: int,
    size: tuple[int, int], font_size: float, flat: bool,
) -> None:  # fmt: skip
    """Column titles above the mosaic and row labels left of it (``flat``: horizontal, else upwards)."""
    h, w = size
    above = offset_copy(ax.transData, fig=fig, y=3, units="points")
    beside = offset_copy(ax.transData, fig=fig, x=-3, units="points")
    for c, label in enumerate(col_titles):
        if label:
            ax.text(
                c * col_step + (w - 1) / 2,
                -0.5,
                label,
                ha="center",
                va="bottom",
                fontsize=font_size,
                transform=above,
            )
    for r, label in enumerate(row_labels):
        if label:
            ax.text(
                -0.5,
                r * row_step + (h - 1) / 2,
                label,
                ha="right",
                va="center",
                rotation=0 if flat else 90,
                multialignment="right" if flat else "center",
                fontsize=font_size,
                transform=beside,
            )


def _draw_overlays(
    ax: Axes, tiles: Sequence[Sequence[Tile | None]], row_step: int, col_step: int, size: tuple[int, int],
    font_size: float,
) -> None:  # fmt: skip
    """Cell texts, mask outlines and expert points (hollow rings, so the pixels under them stay visible)."""
    h, w = size
    crosses: list[np.ndarray] = []
    circles: list[np.ndarray] = []
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            if tile is None:
                continue
            y0, x0 = r * row_step, c * col_step
            if tile.text:
                ax.text(
                    x0 + (w - 1) / 2,
                    y0 + (h - 1) / 2,
                    tile.text,
                    ha="center",
                    va="center",
                    fontsize=font_size,
                )
            if tile.mask is not None:
                mask = np.asarray(tile.mask, dtype=np.float64)
                if mask.any() and not mask.all():
                    ys, xs = np.arange(mask.shape[0]) + y0, np.arange(mask.shape[1]) + x0
                    ax.contour(xs, ys, mask, levels=[0.5], colors=tile.mask_color, linewidths=1.2)
            if tile.points is not None and len(tile.points):
                pts = np.asarray(tile.points, dtype=np.float64).reshape(-1, 2) + (x0, y0)
                (crosses if tile.point_style == "cross" else circles).append(pts)
    if circles:
        pts = np.concatenate(circles)
        ax.scatter(
            pts[:, 0], pts[:, 1], s=30, marker="o", facecolors="none", edgecolors=MASK_COLOR, linewidths=1.2
        )
    if crosses:  # hollow rings too: a filled marker would hide the pixels a reviewer must see
        pts = np.concatenate(crosses)
        ax.scatter(
            pts[:, 0], pts[:, 1], s=42, marker="o", facecolors="none", edgecolors=POINT_COLOR, linewidths=1.3
        )


def _colorbar(fig: Figure, x: float, y: float, height: float, spec: tuple[str, str]) -> None:
    """A 0–1 colour bar of ``spec = (cmap, label)`` in an axes at figure fraction ``x, y`` (0.15 in wide)."""
    cmap, label = spec
    w_in = fig.get_size_inches()[0]
    cax = fig.add_axes((x, y, 0.15 / w_in, height))
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap), cax=cax)
    bar.set_label(label, fontsize=9)
    bar.ax.tick_params(labelsize=8)
