"""Training: standard and adversarial fits learn, early stopping, class weights."""

from __future__ import annotations

import pytest
import torch

import robustxai as rx
from robustxai import DataError, RobustXAIError
from robustxai.training._fit import _class_weights

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.audit._stages_models, robustxai.training._fit"


def _separable(n: int = 96, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, size, size, generator=gen) * 0.3
    x[y == 1, :, : size // 2] += 0.6  # bright top half ⇒ class 1
    return x.clamp(0, 1), y


@pytest.mark.parametrize("adversarial", [None, "pgd"])
def test_fit_learns_a_separable_task(adversarial) -> None:
    x, y = _separable()
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8))
    cfg = rx.FitConfig(epochs=6, batch_size=16, lr=1e-2, adversarial=adversarial, attack_steps=2, patience=6)
    result = rx.fit(model, (x, y), config=cfg)
    assert result.val_accuracy >= 0.9
    assert not model.training
    assert 1 <= result.best_epoch <= len(result.history) <= 6


def test_early_stopping_stops() -> None:
    x, y = _separable()
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]  # unlearnable
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8))
    result = rx.fit(model, (x, y), config=rx.FitConfig(epochs=30, batch_size=32, lr=1e-2, patience=2))
    assert len(result.history) < 30


def test_fit_is_reproducible() -> None:
    x, y = _separable(48)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = rx.create_model("smallcnn", widths=(4, 8, 8, 8))
        rx.fit(model, (x, y), config=rx.FitConfig(epochs=2, batch_size=16, seed=5))
        outs.append(model(x[:4]))
    torch.testing.assert_close(outs[0], outs[1])


def test_class_weights_are_inverse_frequency() -> None:
    w = _class_weights(torch.tensor([0, 0, 0, 1]), 2)
    torch.testing.assert_close(w, torch.tensor([4 / 6, 4 / 2]))


def test_fit_rejects_bad_data() -> None:
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8))
    x, y = _separable(20)
    with pytest.raises(RobustXAIError, match=r"\[0, 1\]"):
        rx.fit(model, (x * 5, y))
    with pytest.raises(DataError, match="labels"):
        rx.fit(model, (x, y + 5))
    with pytest.raises(RobustXAIError, match="adversarial"):
        rx.FitConfig(adversarial="trades")  # type: ignore[arg-type]


def test_eps_warmup_ramps_and_delays_selection() -> None:
    x, y = _separable(64)
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8))
    cfg = rx.FitConfig(
        epochs=3, batch_size=32, adversarial="pgd", attack_steps=1, eps_warmup_epochs=3, patience=1, lr=1e-2
    )
    result = rx.fit(model, (x, y), config=cfg)
    assert len(result.history) == 3  # no early stop while ε is still growing
    assert result.best_epoch == 3
    assert all("robust_val_accuracy" in row for row in result.history)
    with pytest.raises(RobustXAIError, match="eps_warmup_epochs"):
        rx.FitConfig(eps_warmup_epochs=-1)


def test_copy_shared_weights_copies_only_the_backbone() -> None:
    from robustxai.audit._stages_models import copy_shared_weights

    torch.manual_seed(0)
    source = rx.create_model("smallcnn", widths=(4, 8, 8, 8))
    target = rx.create_model("smallcnn-attention", widths=(4, 8, 8, 8))
    copied = copy_shared_weights(source, target)
    assert copied and all(not k.startswith("net.head") for k in copied)
    for k in copied:
        torch.testing.assert_close(target.state_dict()[k], source.state_dict()[k])
    assert any(k.startswith("net.head") for k in target.state_dict() if k not in copied)


def test_multilabel_val_loss_is_per_label_bce_with_pos_weight() -> None:
    import torch.nn.functional as F

    from robustxai.data import ImageDataset, Sample, Truth

    x, y = _separable(24)
    labels = torch.stack([y, 1 - y, (torch.arange(24) % 3 == 0).long()], dim=1)

    class MultiLabel(ImageDataset):
        class_names = ["a", "b", "c"]

        def __len__(self) -> int:
            return 24

        def _load(self, i: int) -> Sample:
            return Sample(x[i], labels[i].tolist(), Truth(), str(i))  # type: ignore[arg-type]

    torch.manual_seed(0)
    model = rx.create_model("smallcnn", num_classes=3, widths=(4, 8, 8, 8))
    model.task = "multilabel"
    val = (x[:8], labels[:8])
    result = rx.fit(model, MultiLabel(), val=val, config=rx.FitConfig(epochs=1, batch_size=8))
    pos = labels.float().sum(0)
    with torch.no_grad():
        per = F.binary_cross_entropy_with_logits(
            model(x[:8]), labels[:8].float(), pos_weight=(24 - pos) / pos, reduction="none"
        )
    assert result.val_loss == pytest.approx(float(per.sum(1).mean()), rel=1e-5)
