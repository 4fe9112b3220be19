"""``peak_in_region``: the map's peak is in the target when most of its tied maxima are (not argmax's first).

``argmax`` returns the first of tied maxima in row-major order, so a flat XRAI region or a bilinearly
upsampled Grad-CAM's 2×2 block counted as "inside" exactly when its top-left pixel was. The rule here
looks at every maximum (within a relative tolerance) and asks for a strict majority inside.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustxai import RobustXAIError
from robustxai.metrics import peak_in_region, pointing_game
from robustxai.metrics._localisation import PEAK_RTOL, peak_pixels

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.metrics._localisation"


def _region() -> torch.Tensor:
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:4, :4] = True  # the top-left quarter
    return region


def _with_peaks(*pixels: tuple[int, int], value: float = 1.0) -> torch.Tensor:
    m = torch.rand(8, 8, generator=torch.Generator().manual_seed(0)) * 0.5
    for r, c in pixels:
        m[r, c] = value
    return m


def test_single_and_tied_maxima() -> None:
    maps = torch.stack(
        [
            _with_peaks((1, 1)),  # one maximum inside
            _with_peaks((6, 6)),  # one maximum outside
            _with_peaks((0, 0), (1, 1), (2, 2)),  # ties, all inside
            _with_peaks((5, 5), (6, 6), (7, 7)),  # ties, all outside
            _with_peaks((0, 0), (1, 1), (6, 6)),  # two of three inside
            _with_peaks((0, 0), (6, 6), (7, 7)),  # one of three inside: argmax's first would say inside
            _with_peaks((3, 3), (3, 4), (4, 3), (4, 4)),  # a 2×2 block on the corner: 1 of 4 inside
            _with_peaks((2, 3), (2, 4), (3, 3), (3, 4)),  # a 2×2 block on the edge: 2 of 4, a split
        ]
    )
    got = peak_in_region(maps, _region())
    assert got.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0] and got.dtype == torch.float64
    first = _region().flatten()[maps.flatten(1).argmax(dim=1)]
    assert first.tolist()[5:] == [True, True, True]  # the top-left bias this replaces


def test_a_flat_map_peaks_everywhere() -> None:
    flat = torch.full((2, 8, 8), 0.3)
    small, large = _region(), ~_region()
    assert peak_in_region(flat, torch.stack([small, large])).tolist() == [0.0, 1.0]
    assert peak_in_region(torch.zeros(1, 8, 8), small).tolist() == [0.0]  # argmax: pixel (0, 0), inside


def test_near_ties_within_the_tolerance() -> None:
    base = _with_peaks((0, 0), (6, 6), (7, 7))
    near = base.clone()
    near[6, 6] = near[7, 7] = 1.0 - 0.5 * PEAK_RTOL  # tied: outside wins 2 to 1
    below = base.clone()
    below[6, 6] = below[7, 7] = 1.0 - 1e-3  # clearly lower: the single maximum is inside
    got = peak_in_region(torch.stack([near, below]), _region())
    assert got.tolist() == [0.0, 1.0]
    assert peak_in_region(near[None], _region(), rtol=0.0).tolist() == [1.0]  # exact ties only


def _brute_force(maps: np.ndarray, regions: np.ndarray, rtol: float) -> list[float]:
    out = []
    for m, reg in zip(maps, regions, strict=True):
        top = max(float(v) for v in m.ravel())
        tied = [
            (r, c) for r in range(m.shape[0]) for c in range(m.shape[1]) if m[r, c] >= top - rtol * abs(top)
        ]
        inside = sum(bool(reg[r, c]) for r, c in tied)
        out.append(1.0 if 2 * inside > len(tied) else 0.0)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_against_a_brute_force_reference(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(7)
    maps = (torch.rand(64, 9, 11, generator=gen) * 4).floor().to(dtype)  # 4 levels: many ties
    maps[::3] += torch.rand(22, 9, 11, generator=gen).to(dtype) * 1e-3  # and some without
    regions = torch.rand(64, 9, 11, generator=gen) < 0.4
    for rtol in (0.0, PEAK_RTOL, 0.1):
        expected = _brute_force(maps.numpy(), regions.numpy(), rtol)
        assert peak_in_region(maps, regions, rtol=rtol).tolist() == expected


def test_pointing_game_keeps_its_exact_ties() -> None:
    maps = torch.stack([_with_peaks((0, 0), (6, 6), (7, 7)), _with_peaks((6, 6))])
    masks = _region().expand(2, -1, -1)
    assert pointing_game(maps, masks=masks).tolist() == [1.0, 0.0]  # "any"
    assert pointing_game(maps, masks=masks, ties="all").tolist() == [0.0, 0.0]
    assert torch.equal(peak_pixels(maps), maps == maps.flatten(1).amax(dim=1)[:, None, None])


def test_nan_pixels_are_never_the_peak() -> None:
    m = _with_peaks((6, 6))
    m[0, 0] = math.nan
    empty = torch.full((8, 8), math.nan)
    assert peak_in_region(torch.stack([m, empty]), _region()).tolist() == [0.0, 0.0]  # empty: 16 of 64 inside


def test_hostile_input_is_one_error() -> None:
    with pytest.raises(RobustXAIError, match="maps must be"):
        peak_in_region(torch.zeros(8, 8), _region())  # type: ignore[arg-type]
    with pytest.raises(RobustXAIError, match="maps must be"):
        peak_in_region([[0.0]], _region())  # type: ignore[arg-type]
    with pytest.raises(RobustXAIError, match="rtol"):
        peak_in_region(torch.zeros(1, 8, 8), _region(), rtol=-1.0)
    with pytest.raises(RobustXAIError, match="does not match"):
        peak_in_region(torch.zeros(1, 8, 8), torch.zeros(1, 4, 4, dtype=torch.bool))


def test_a_map_without_any_number_is_never_inside() -> None:
    everywhere = torch.ones(8, 8, dtype=torch.bool)  # the whole map is the region: a flat map would score 1
    maps = torch.stack([torch.full((8, 8), math.nan), torch.full((8, 8), math.inf), _with_peaks((1, 1))])
    assert peak_in_region(maps, everywhere).tolist() == [0.0, 0.0, 1.0]


def test_an_empty_batch_and_a_bad_rtol_are_handled_in_one_line() -> None:
    out = peak_in_region(torch.zeros(0, 8, 8), torch.zeros(0, 8, 8, dtype=torch.bool))
    assert out.shape == (0,) and out.dtype == torch.float64
    for bad in (True, "0.1", math.nan, None):
        with pytest.raises(RobustXAIError, match=r"^rtol must be a finite number[^\n]*$"):
            peak_in_region(torch.zeros(1, 8, 8), _region(), rtol=bad)  # type: ignore[arg-type]
