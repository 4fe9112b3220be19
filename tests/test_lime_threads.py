"""LIME's segmentation runs one image per thread: the labels do not depend on how many threads ran."""

from __future__ import annotations

import pytest
import torch

from robustxai.explain._lime import segment_images

WHITE_BOX = "why: threading is internal to the segmentation; its labels are the contract"


@pytest.mark.parametrize("method", ["quickshift", "slic"])
def test_labels_are_the_same_with_one_or_two_threads(method: str) -> None:
    g = torch.Generator().manual_seed(3)
    images = torch.rand(5, 1, 32, 32, generator=g)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = segment_images(images, method)
        torch.set_num_threads(2)
        two = segment_images(images, method)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)
    singles = torch.cat([segment_images(images[i : i + 1], method) for i in range(5)])
    assert torch.equal(one, singles)  # an image's labels do not depend on the others in the batch
