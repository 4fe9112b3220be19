"""The cost plan: pass counts against counted model calls, the timing cache, trimming, the CLI's output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import robustxai as rx
from robustxai import ConfigError, RobustXAIError
from robustxai.audit import load_config
from robustxai.audit._estimate import estimate_audit
from robustxai.audit._estimate_text import plan_lines
from robustxai.audit._estimate_trim import trim_to_fit
from robustxai.audit._passes import explainer_work
from robustxai.audit._progress import LineProgress, UnitStages
from robustxai.audit._stages_models import check_fits
from robustxai.audit._timing import PassTime, TimingCache
from robustxai.cli import app

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.audit._estimate, robustxai.audit._estimate_text, "
    "robustxai.audit._estimate_trim, robustxai.audit._passes, robustxai.audit._progress, "
    "robustxai.audit._stages_models, robustxai.audit._timing"
)

runner = CliRunner()


class Counter:
    """Rows through the model's forward and backward passes, counted by hooks (an independent reference)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.forward = self.backward = 0
        model.register_forward_hook(self._fwd)
        model.register_full_backward_hook(self._bwd)

    def _fwd(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        self.forward += int(args[0].shape[0])

    def _bwd(self, module: torch.nn.Module, grad_in: object, grad_out: tuple[torch.Tensor, ...]) -> None:
        self.backward += int(grad_out[0].shape[0])


@pytest.fixture
def tiny() -> tuple[rx.models.ModelWrapper, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = rx.create_model("smallcnn", num_classes=2, widths=[4, 4, 4, 4]).eval()
    return model, torch.rand(5, 1, 16, 16), torch.tensor([0, 1, 0, 1, 1])


@pytest.mark.parametrize(
    ("name", "params"),
    [("fgsm", {}), ("pgd", {"steps": 3}), ("bim", {"steps": 4}), ("apgd", {"steps": 4, "restarts": 1})],
)
def test_attack_pass_counts_match_counted_model_calls(tiny, name: str, params: dict[str, int]) -> None:
    model, x, y = tiny
    attack = rx.create_attack(name, eps=0.03, **params)
    count = Counter(model)
    attack(model, x, y)
    assert (count.forward, count.backward) == attack.passes(len(x))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("saliency", {}),
        ("integrated_gradients", {"n_steps": 6}),
        ("smoothgrad", {"n_samples": 3}),
        ("input_x_gradient", {}),
        ("lime", {"n_samples": 10}),
    ],
)
def test_explainer_pass_counts_match_counted_model_calls(tiny, name: str, params: dict[str, int]) -> None:
    model, x, _ = tiny
    explainer = rx.create_explainer(name, **params)
    work = explainer_work(explainer, name, len(x), len(x), (1, 16, 16))
    count = Counter(model)
    explainer.explain(model, x)
    assert count.forward == sum(w.forward for w in work)
    assert count.backward == sum(w.backward for w in work)


def test_trimming_keeps_the_most_images_that_fit_and_refuses_what_cannot() -> None:
    cfg = load_config(profile="smoke")  # 6 explained, 4 manipulated images

    def total(c):  # 100 s fixed, 10 s per explained image, 30 s per manipulated one
        assert c.manipulation is not None
        return 100.0 + 10.0 * c.explain.n_images + 30.0 * c.manipulation.n_images

    same, none = trim_to_fit(cfg, 400.0, total)
    assert none == [] and same is cfg
    fitted, trimmed = trim_to_fit(cfg, 250.0, total)  # all: 280 s; 5 and 3 images: 240 s
    assert fitted.manipulation is not None
    assert (fitted.explain.n_images, fitted.manipulation.n_images) == (5, 3)
    assert trimmed == ["explain.n_images 6 → 5", "manipulation.n_images 4 → 3"]
    with pytest.raises(ConfigError, match="even one explained and one manipulated image"):
        trim_to_fit(cfg, 120.0, total)  # the minimum takes 140 s


def test_progress_starts_from_predictions_and_corrects_itself() -> None:
    @dataclass(frozen=True)
    class U:
        id: str
        kind: str = "explanation"
        model: str = "m"
        explainer: str = "saliency"

    now = [0.0]
    units = [U("a", explainer="x"), U("b", explainer="y"), U("c", explainer="z")]

    class Sink:
        def start(self, description: str, total: int) -> int:
            return 0

        def advance(self, task: int, steps: int = 1) -> None: ...

        def finish(self, task: int) -> None: ...

    stages = UnitStages(Sink(), units, clock=lambda: now[0], predicted={"a": 10.0, "b": 20.0, "c": 30.0})
    assert stages.eta(("explain", "m")) == pytest.approx(60.0)  # before any unit finished: the plan
    now[0] = 20.0  # the first unit took twice its prediction
    stages.done(units[0])
    assert stages.eta(("explain", "m")) == pytest.approx(100.0)  # (20 + 30) × 2


def _small_config(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(
        f'cache_dir = "{tmp_path / "cache"}"\n'
        "[data]\nn_train = 40\nn_test = 8\nsize = 16\n"
        '[[models]]\nname = "m"\narch = "smallcnn"\narch_kwargs = { widths = [4, 4, 4, 4] }\n'
        "[training]\nepochs = 1\n[explain]\nn_images = 3\nbatch_size = 3\n"
        "[manipulation]\nn_images = 2\niterations = 2\nbatch_size = 2\n"
        'methods = ["saliency"]\ntransfer_from = []\n'
    )
    return path


def test_plan_times_once_then_reads_the_cache(tmp_path: Path) -> None:
    cfg = load_config(_small_config(tmp_path), profile="smoke")
    first = estimate_audit(cfg)
    assert first.measured > 0 and first.to_train == ["m"]
    timing = TimingCache(Path(str(cfg.cache_dir)))
    second = estimate_audit(cfg, timing=timing)
    assert timing.measured == 0 and second.measured == 0  # nothing timed again
    assert second.seconds == pytest.approx(first.seconds)
    by_name = {s.name: s for s in second.stages}
    assert by_name["training"].seconds > 0 and by_name["attack"].backward > 0
    assert set(second.unit_seconds) >= {"sanity/m", "explanation/m/saliency/0"}


@pytest.mark.slow
def test_cli_plan_of_the_smoke_profile(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["plan", "--profile", "smoke", "--cache-dir", str(tmp_path), "--workers", "3"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("plan of audit 'smoke'")
    for stage in ("training", "sanity", "attack", "explain", "manipulate", "report", "total"):
        assert f"\n  {stage} " in out
    assert "pgd: 360 fwd+bwd, 120 fwd" in out  # PGD-3 on 3 models × 40 images, then their scoring
    assert "an assumption, not measured" in out and "3-worker Ray cluster" in out


def test_cli_audit_prints_the_plan_first_and_max_minutes_refuses_in_one_line(tmp_path: Path) -> None:
    config = _small_config(tmp_path)
    refused = runner.invoke(
        app,
        ["audit", str(config), "--profile", "smoke", "--out", str(tmp_path / "r0"), "--max-minutes", "0.01"],
    )
    assert refused.exit_code == 2
    assert "error: even one explained and one manipulated image" in refused.output
    assert "Traceback" not in refused.output
    result = runner.invoke(app, ["audit", str(config), "--profile", "smoke", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert result.output.lstrip().startswith("plan of audit 'smoke'")
    assert result.output.index("total") < result.output.index("audit finished")


def test_a_stage_start_line_shows_the_predicted_eta() -> None:
    @dataclass(frozen=True)
    class U:
        id: str
        kind: str = "robustness"
        model: str = "m"

    lines: list[str] = []
    prog = LineProgress(lines.append, clock=lambda: 0.0)
    UnitStages(prog, [U("a"), U("b")], predicted={"a": 30.0, "b": 30.0})
    assert lines == ["[0:00:00] attack m (stage 1/1): started, 0/2, ETA 0:01:00"]


class FixedTimes(TimingCache):
    """Every pass costs 10 ms per image forward, 30 ms forward+backward (no measuring, deterministic)."""

    def get(self, spec, model, shape, batch, device="cpu", *, train=False, gradient=True):  # type: ignore[override]
        return PassTime(batch, 0.01 * batch, 0.03 * batch, 0.05 * batch, 1000 * batch, 100)


def test_max_minutes_trims_the_audit_it_plans_and_says_so(tmp_path: Path) -> None:
    cfg = load_config(_small_config(tmp_path), profile="smoke")
    full = estimate_audit(cfg, timing=FixedTimes(None))
    assert full.trimmed == []
    budget = full.seconds - 1.0  # one second less than everything: some images must go
    fitted = estimate_audit(cfg, timing=FixedTimes(None), max_minutes=budget / 60)
    assert fitted.seconds <= budget < full.seconds
    assert fitted.cfg.explain.n_images < cfg.explain.n_images
    assert any(
        line.startswith("trimmed to fit --max-minutes: explain.n_images 3 → ") for line in plan_lines(fitted)
    )


def test_the_plan_names_the_pairs_it_cannot_run_with_their_reason(tmp_path: Path) -> None:
    cfg = load_config(_small_config(tmp_path), profile="smoke")
    cfg.explain.methods = ["saliency", "attention_rollout"]  # a CNN has no attention to roll out
    est = estimate_audit(cfg, timing=FixedTimes(None))
    lines = [line for line in plan_lines(est) if "cannot run" in line]
    assert len(lines) == 1
    assert lines[0].startswith("  cannot run, so not planned: m: attention_rollout skipped (explanation): ")
    assert "no global self-attention" in lines[0]
    assert "explanation/m/attention_rollout/0" not in est.unit_seconds


def test_a_saved_model_for_other_channels_is_refused_naming_the_setting() -> None:
    model = rx.create_model("smallcnn", in_channels=1, class_names=["normal", "fracture"])
    info: Any = {"class_names": ["normal", "fracture"], "task": "multiclass", "channels": 3}
    with pytest.raises(
        RobustXAIError, match=r"'one' takes 1-channel images but the data has 3 \(data.channels"
    ):
        check_fits("one", model, info)
    check_fits("one", model, {**info, "channels": 1})


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a machine without a GPU")
def test_plan_refuses_cuda_without_a_gpu_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "cuda.toml"
    config.write_text('name = "cuda"\n[executor]\ndevice = "cuda"\n')
    for command in ("plan", "audit"):
        out = ["--out", str(tmp_path / "run")] if command == "audit" else []
        result = runner.invoke(app, [command, str(config), "--profile", "smoke", *out])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        text = " ".join(result.output.split())
        assert "error: executor.device = 'cuda' but torch sees no CUDA device" in text
