"""The sample and data set types shared by every data source."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import overload

import torch

from robustxai._errors import DataError
from robustxai.data._truth import Truth


@dataclass
class Sample:
    """One image with its label and ground truth.

    Attributes:
        image: Float tensor ``[C, H, W]`` in [0, 1].
        label: Integer class index (multiclass), or a float tensor ``[K]`` of 0/1 values, one per label
            (multi-label data sets, ``dataset.task == "multilabel"``).
        truth: Expert annotation (empty for images without a finding).
        id: Stable identifier, unique within its data set.
        meta: Free-form, non-identifying metadata (never patient identifiers).
    """

    image: torch.Tensor
    label: int | torch.Tensor
    truth: Truth
    id: str
    meta: dict[str, object] = field(default_factory=dict)


class ImageDataset(Sequence[Sample]):
    """A random-access collection of :class:`Sample` objects with known class names.

    Subclasses implement ``__len__`` and ``_load(i)`` for ``0 ≤ i < len``; indexing (negative indices,
    bounds, slices) is handled here once for every data source.

    Attributes:
        class_names: Class names (multiclass) or label names (multi-label), in index order.
        task: ``"multiclass"`` (one class index per sample) or ``"multilabel"`` (one 0/1 per label), the
            same names :class:`~robustxai.models.ModelWrapper` uses.
    """

    class_names: list[str]
    task: str = "multiclass"

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
        """All class indices in order (subclasses may answer without loading images).

        Raises:
            DataError: For a multi-label data set, whose labels are rows of 0/1 (use :meth:`targets`).
        """
        if self.task == "multilabel":
            raise DataError(f"{type(self).__name__} is multi-label: use targets() for its [N, K] labels")
        return [int(self[i].label) for i in range(len(self))]

    def targets(self) -> torch.Tensor:
        """All labels as one tensor: long ``[N]`` (multiclass) or float 0/1 ``[N, K]`` (multi-label)."""
        if self.task == "multilabel":
            rows = [torch.as_tensor(self[i].label, dtype=torch.float32) for i in range(len(self))]
            return torch.stack(rows) if rows else torch.zeros(0, len(self.class_names))
        return torch.tensor(self.labels(), dtype=torch.long)


def stack_images(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack samples into an image batch ``[B, C, H, W]`` and their labels.

    Labels become a long vector ``[B]`` when every sample has a class index, or a float ``[B, K]`` matrix of
    0/1 when every sample has a multi-label tensor ``[K]``.

    Raises:
        DataError: If the batch is empty, or mixes the two kinds of label or label lengths.
    """
    if len(samples) == 0:
        raise DataError("stack_images: no samples to stack")
    images = torch.stack([s.image for s in samples])
    multi = [isinstance(s.label, torch.Tensor) and s.label.ndim == 1 for s in samples]
    if all(multi):
        sizes = {int(s.label.shape[0]) for s in samples if isinstance(s.label, torch.Tensor)}
        if len(sizes) != 1:
            raise DataError(f"stack_images: multi-label samples have different label counts {sorted(sizes)}")
        labels = torch.stack([torch.as_tensor(s.label, dtype=torch.float32) for s in samples])
        return images, labels
    if any(multi):
        raise DataError("stack_images: samples mix class indices and multi-label tensors")
    return images, torch.tensor([int(s.label) for s in samples], dtype=torch.long)


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
        self.task = base.task

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, index: int) -> Sample:
        return self.base[self.indices[index]]

    def labels(self) -> list[int]:
        """Labels of the selected samples."""
        all_labels = self.base.labels()
        return [all_labels[i] for i in self.indices]

    def targets(self) -> torch.Tensor:
        """Labels of the selected samples as one tensor (see :meth:`ImageDataset.targets`)."""
        return self.base.targets()[torch.tensor(self.indices, dtype=torch.long)]


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A deterministic (train, test) split of ``range(n)``; both sorted."""
    import numpy as np

    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(n - 1, max(1, int(round(test_fraction * n))))
    return sorted(perm[n_test:].tolist()), sorted(perm[:n_test].tolist())
