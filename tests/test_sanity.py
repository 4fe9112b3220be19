"""Sanity checks: each deliberately broken model triggers its warning, a normal model triggers none."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import robustxai as rx
from robustxai import RobustXAIError
from robustxai.attacks import gradient_masking_check, sanity_checks


class Quantised(nn.Module):
    """Rounds the input to 8-bit grey levels with no straight-through gradient: input gradients are zero."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 255) / 255)


class Softmaxed(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).softmax(dim=1)


def _codes(found) -> set[str]:
    return {w.code for w in found}


def test_normal_model_triggers_nothing(tiny_model, images, labels) -> None:
    assert sanity_checks(tiny_model, images, labels) == []


def test_quantised_model_has_zero_gradients_and_pgd_fails_on_it(tiny_model, images, labels) -> None:
    masked = Quantised(tiny_model).eval()
    found = sanity_checks(masked, images, labels)
    assert _codes(found) == {"zero_gradients"}
    assert "4 of 4 samples" in found[0].message
    # the masking shows in the numbers too: without a gradient PGD moves nowhere
    adv = rx.create_attack("pgd", eps=0.3, random_start=False)(masked, images, labels)
    assert torch.equal(adv, images)


def test_softmax_outputs_trigger_the_logits_warning(tiny_model, images, labels) -> None:
    found = sanity_checks(Softmaxed(tiny_model).eval(), images, labels)
    assert "probabilities" in _codes(found)
    assert "must return logits" in next(w.message for w in found if w.code == "probabilities")


def test_sigmoid_outputs_of_a_multilabel_model_trigger_the_logits_warning(images) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 3), nn.Sigmoid())
    model = rx.ModelWrapper(net, class_names=["a", "b", "c"], task="multilabel").eval()
    y = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]])
    assert "probabilities" in _codes(sanity_checks(model, images, y))
    logit_model = rx.ModelWrapper(net[:2], class_names=["a", "b", "c"], task="multilabel").eval()
    assert sanity_checks(logit_model, images, y) == []  # the same net without its sigmoid is fine


def test_dropout_model_in_train_mode_warns_and_keeps_its_state(images, labels) -> None:
    torch.manual_seed(0)
    model = rx.create_model("smallcnn", widths=(4, 8, 8, 8), dropout=0.5).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    found = sanity_checks(model, images, labels)
    assert {"train_mode", "randomness"} <= _codes(found)
    assert model.training and all(m.training for m in model.modules())  # mode left as it was
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm statistics untouched
    assert torch.equal(rng, torch.get_rng_state())
    model.eval()
    assert sanity_checks(model, images, labels) == []
    assert not model.training


def test_nan_gradients_are_reported(tiny_model, images, labels) -> None:
    class Sqrt(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return tiny_model(torch.sqrt(x - 0.5).nan_to_num(0.0) + x)

    assert "nonfinite_gradients" in _codes(sanity_checks(Sqrt().eval(), images, labels))


def test_detached_input_path_counts_as_zero_gradients(tiny_model, images, labels) -> None:
    class Detached(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return tiny_model(x.detach())

    assert _codes(sanity_checks(Detached().eval(), images, labels)) == {"zero_gradients"}


def test_sanity_checks_validate_input(tiny_model, images, labels) -> None:
    with pytest.raises(RobustXAIError, match=r"\[0, 1\]"):
        sanity_checks(tiny_model, images * 2, labels)
    with pytest.raises(RobustXAIError, match="labels"):
        sanity_checks(tiny_model, images, labels[:3])


def test_gradient_masking_check_rules() -> None:
    assert gradient_masking_check(0.50, 0.45) == []
    gap = gradient_masking_check(0.62, 0.40)
    assert _codes(gap) == {"pgd_apgd_gap"} and "22.0 points" in gap[0].message
    assert gradient_masking_check(0.40, 0.62) == []  # APGD weaker than PGD is not masking
    # at ε ≥ 0.5 every image can be turned mid-grey: accuracy above chance proves the attack failed
    assert _codes(gradient_masking_check(large_eps_acc=0.7, large_eps=0.5, chance=0.5)) == {"large_eps"}
    assert gradient_masking_check(large_eps_acc=0.51, large_eps=0.5, chance=0.5) == []
    # heuristic at ε = 0.3: more than half the clean accuracy
    assert _codes(gradient_masking_check(large_eps_acc=0.6, clean_acc=0.9)) == {"large_eps"}
    assert gradient_masking_check(large_eps_acc=0.3, clean_acc=0.9) == []
    # more steps may leave accuracy unchanged (converged), but must not raise it
    assert gradient_masking_check(step_accs={10: 0.4, 100: 0.4}) == []
    assert gradient_masking_check(step_accs={100: 0.3, 10: 0.4, 1000: 0.29}) == []
    rose = gradient_masking_check(step_accs={10: 0.40, 50: 0.35, 100: 0.45})
    assert _codes(rose) == {"steps_increase"} and "35.0% at 50 steps" in rose[0].message


def test_gradient_masking_flags_the_quantised_model(tiny_model) -> None:
    """End to end: on a gradient-masked model a large-ε attack leaves accuracy where it was."""
    torch.manual_seed(0)
    x = torch.rand(16, 1, 32, 32)
    masked = Quantised(tiny_model).eval()
    with torch.no_grad():
        y = masked(x).argmax(1)
    pgd = rx.create_attack("pgd", eps=0.3, steps=5, random_start=False)
    acc = float(pgd.robust_accuracy(masked, x, y).float().mean())
    assert acc == 1.0
    assert _codes(gradient_masking_check(large_eps_acc=acc, large_eps=0.3, clean_acc=1.0)) == {"large_eps"}


def test_gradient_masking_check_errors() -> None:
    with pytest.raises(RobustXAIError, match=r"pgd_acc must be an accuracy in \[0, 1\]"):
        gradient_masking_check(62.0, 40.0)
    with pytest.raises(RobustXAIError, match="needs clean_acc"):
        gradient_masking_check(large_eps_acc=0.5)
    with pytest.raises(RobustXAIError, match="gap and noise"):
        gradient_masking_check(0.5, 0.4, gap=2)
