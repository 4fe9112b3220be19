"""Array helpers shared by every layer: the one min-max normalisation of robustxai.

Maps are min-max normalised before they are compared (SSIM, MSE), before they are stored as float16 and
before they are drawn, and the manipulation attack normalises its differentiable maps the same way. One
function does it for all of them, so every layer agrees on what a "normalised map" is — including a constant
map, which becomes all zeros rather than NaN.
"""

from __future__ import annotations

import numpy as np
import torch


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each sample of a batch (every dimension after the first) to [0, 1].

    Differentiable (it is used inside the manipulation attack's loss); keeps dtype and device. A sample
    without spread becomes all zeros.

    Args:
        maps: A batch ``[B, ...]`` (e.g. maps ``[B, H, W]``) of any float dtype.

    Returns:
        Tensor of the same shape, each sample spanning exactly [0, 1] unless constant.
    """
    flat = maps.reshape(maps.shape[0], -1)
    view = (-1,) + (1,) * (maps.ndim - 1)
    lo = flat.amin(dim=1).view(view)
    span = flat.amax(dim=1).view(view) - lo
    nonconst = span > 0
    scaled = (maps - lo) / torch.where(nonconst, span, torch.ones_like(span))
    return torch.where(nonconst, scaled, torch.zeros_like(maps))


def minmax_array(array: np.ndarray) -> np.ndarray:
    """:func:`minmax` of one whole numpy array (a map or an image), keeping its dtype."""
    arr = np.asarray(array)
    if arr.size == 0:
        return arr.copy()
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # e.g. an array unpickled from Ray's object store: torch would warn
        arr = arr.copy()
    out: np.ndarray = minmax(torch.from_numpy(arr)[None])[0].numpy()
    return out
