"""The sample and data set types shared by every data source."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import overload

import torch

from robustxai.data.truth import Truth


@dataclass
class Sample:
    """One image with its label and ground truth.

    Attributes:
        image: Float tensor ``[C, H, W]`` in [0, 1].
        label: Integer class index.
        truth: Expert annotation (empty for images without a finding).
        id: Stable identifier, unique within its data set.
        meta: Free-form, non-identifying metadata (never patient identifiers).
    """

    image: torch.Tensor
    label: int
    truth: Truth
    id: str
    meta: dict[str, object] = field(default_factory=dict)


class ImageDataset(Sequence[Sample]):
    """A random-access collection of :class:`Sample` objects with known class names.

    Subclasses implement ``__len__`` and ``_load(i)`` for ``0 ≤ i < len``; indexing (negative indices,
    bounds, slices) is handled here once for every data source.
    """

    class_names: list[str]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _load(self, index: int) -> Sample:
        """Return sample ``index`` (already checked to lie in ``[0, len)``)."""

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        """Sample ``index`` (negative indices count from the end), or a list of samples for a slice."""
        if isinstance(index, slice):
            return [self._load(i) for i in range(*index.indices(len(self)))]
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {len(self)}")
        return self._load(i)

    def labels(self) -> list[int]:
        """All labels in order (subclasses may answer without loading images)."""
        return [self[i].label for i in range(len(self))]


def stack_images(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack samples into an image batch ``[B, C, H, W]`` and a label vector ``[B]``."""
    images = torch.stack([s.image for s in samples])
    labels = torch.tensor([s.label for s in samples], dtype=torch.long)
    return images, labels


class SubsetDataset(ImageDataset):
    """A fixed selection of another data set's samples, in the given order.

    Args:
        base: The data set to select from.
        indices: Positions in ``base``.
    """

    def __init__(self, base: ImageDataset, indices: Sequence[int]) -> None:
        self.base = base
        self.indices = [int(i) for i in indices]
        self.class_names = list(base.class_names)

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, index: int) -> Sample:
        return self.base[self.indices[index]]

    def labels(self) -> list[int]:
        """Labels of the selected samples."""
        all_labels = self.base.labels()
        return [all_labels[i] for i in self.indices]


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A deterministic (train, test) split of ``range(n)``; both sorted."""
    import numpy as np

    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(n - 1, max(1, int(round(test_fraction * n))))
    return sorted(perm[n_test:].tolist()), sorted(perm[:n_test].tolist())
