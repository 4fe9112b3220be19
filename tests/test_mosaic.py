"""The one-axes image grid of the report: tiles land where they should, overlays and blanks, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps

from robustxai.report._figures import column_title, save_png
from robustxai.report._mosaic import Tile, _rgb, tile_grid

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.report._figures, robustxai.report._mosaic"


def _grid() -> list[list[Tile | None]]:
    ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:5, 2:5] = True
    return [
        [Tile(ramp, "gray", 0.0, 1.0, np.array([[1.0, 2.0]]), "cross", mask=mask), Tile(text="n/a")],
        [None, Tile(ramp * 5 - 2, "inferno", points=np.array([[3.0, 3.0]]))],
    ]


def test_tiles_are_colour_mapped_like_imshow() -> None:
    values = np.array([[0.0, 2.0], [4.0, 4.0]])
    auto = _rgb(Tile(values, "inferno"))  # own min/max, like imshow without vmin/vmax
    np.testing.assert_array_equal(auto, colormaps["inferno"](values / 4.0, bytes=True)[..., :3])
    fixed = _rgb(Tile(values, "gray", 0.0, 2.0))  # clipped to [vmin, vmax]
    assert fixed[1, 0].tolist() == [255, 255, 255] and fixed[0, 0].tolist() == [0, 0, 0]
    constant = _rgb(Tile(np.full((3, 3), 7.0), "inferno"))  # no range: the colormap's low end
    np.testing.assert_array_equal(constant[1, 1], colormaps["inferno"](0.0, bytes=True)[:3])
    rgb = np.random.default_rng(0).random((4, 4, 3))
    np.testing.assert_array_equal(_rgb(Tile(rgb)), np.round(rgb * 255).astype(np.uint8))  # RGB as it is


def test_pixels_without_a_value_are_white_and_do_not_stretch_the_range() -> None:
    values = np.array([[np.nan, 2.0], [4.0, np.inf]])
    out = _rgb(Tile(values, "inferno"))
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [255, 255, 255]
    low, high = (colormaps["inferno"](v, bytes=True)[:3] for v in (0.0, 1.0))
    np.testing.assert_array_equal(out[0, 1], low)  # 2 is the finite minimum, 4 the maximum
    np.testing.assert_array_equal(out[1, 0], high)
    assert (_rgb(Tile(np.full((2, 2), np.nan), "gray")) == 255).all()  # nothing to draw: all white
    rgb = np.zeros((2, 2, 3))
    rgb[0, 0, 1] = np.nan
    assert _rgb(Tile(rgb))[0, 0].tolist() == [255, 255, 255] and _rgb(Tile(rgb))[1, 1].tolist() == [0, 0, 0]


def test_grid_is_one_axes_with_titles_labels_and_overlays() -> None:
    fig = tile_grid(_grid(), col_titles=["a", "b"], row_labels=["r0", "r1"], title="T")
    (ax,) = fig.axes
    (image,) = ax.get_images()
    canvas = image.get_array()
    assert canvas.shape[:2] == (8 + 1 + 8, 8 + 1 + 8)  # two tiles and a one-pixel gap each way
    assert (canvas[9:, :8] == 255).all()  # the None cell is blank (white)
    texts = {t.get_text() for t in ax.texts}
    assert {"a", "b", "r0", "r1", "n/a"} <= texts
    assert len(ax.collections) == 3  # the mask outline, circles and crosses
    assert ax.get_xlim() == (-0.5, 16.5) and ax.get_ylim() == (16.5, -0.5)


def test_grid_png_is_deterministic(tmp_path: Path) -> None:
    paths = [save_png(tile_grid(_grid(), title="T"), tmp_path / f"{i}.png") for i in range(2)]
    assert paths[0].read_bytes() == paths[1].read_bytes()


@pytest.mark.parametrize(
    ("name", "lines"),
    [
        ("gradcam", ["gradcam"]),
        ("integrated_gradients", ["integrated_", "gradients"]),
        ("attention_rollout", ["attention_", "rollout"]),
        ("input_x_gradient", ["input_x_", "gradient"]),
        ("a$b", [r"a\$b"]),  # never mathtext
    ],
)
def test_column_titles_break_after_underscores_and_keep_the_name(name: str, lines: list[str]) -> None:
    title = column_title(name)
    assert title.split("\n") == lines
    assert "".join(lines).replace("\\$", "$") == name
