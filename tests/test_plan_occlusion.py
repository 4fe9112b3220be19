"""The plan prices occlusion by one measured call per image (:mod:`robustxai.audit._timing_explain`).

Its pass count (one full forward per window and image) over-predicted the paper profile's explanation stage
about 9× on occlusion: the incremental engine re-evaluates only the box a window reaches.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from robustxai.audit import _timing as timing_module, _timing_explain as timing_explain, load_config
from robustxai.audit._estimate import _stages, estimate_audit, work_seconds
from robustxai.audit._estimate_text import plan_lines
from robustxai.audit._passes import Work, explainer_work
from robustxai.audit._timing import PassTime, TimingCache, measure
from robustxai.audit._timing_explain import CallTime, measure_call
from robustxai.data import SyntheticFracture, stack_images
from robustxai.explain import create_explainer
from robustxai.models import create_model

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = (
    "tests internals of robustxai.audit._estimate, robustxai.audit._estimate_text, "
    "robustxai.audit._passes, robustxai.audit._timing, robustxai.audit._timing_explain"
)


def _images(n: int, size: int) -> torch.Tensor:
    ds = SyntheticFracture(n, size=size, fracture_rate=1.0)
    return stack_images([ds[i] for i in range(n)])[0]


@pytest.mark.slow
def test_a_measured_call_predicts_an_occlusion_call_within_30_percent(monkeypatch) -> None:
    """Priced per image from a 2-image call, an 8-image call is predicted within ±30 % (CPU time on both
    sides, so the machine's load does not decide it); the window count's price of before was several × off."""
    monkeypatch.setattr(timing_explain.time, "perf_counter", time.process_time)
    monkeypatch.setattr(timing_module.time, "perf_counter", time.process_time)
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=2, class_names=["a", "b"], in_channels=1).eval()
    images = _images(8, 64)
    occlusion = create_explainer("occlusion")
    call = measure_call(model, occlusion, images[:2])
    assert call.engine == "incremental" and call.applies
    predicted = call.per_image * 8
    t = time.process_time()
    occlusion.explain(model, images)
    took = time.process_time() - t
    assert 0.7 <= took / predicted <= 1.3, (took, predicted, call)
    (old_work,) = explainer_work(occlusion, "occlusion", 8, 8, (1, 64, 64))
    old = work_seconds(old_work, {8: measure(model, (1, 64, 64), 8, repeats=3)})
    assert old / took > 1.3, (old, took)


def test_occlusion_is_priced_per_image_unless_it_fell_back_to_captum() -> None:
    times = {"m": {4: PassTime(4, 0.004, 0.01, None, 0, 0)}}
    work = Work("occlusion", 4 * 100, 0, 4, images=4)
    unit = type("U", (), {"id": "explanation/m/occlusion/0", "kind": "explanation", "model": "m"})()
    engine = {("m", "occlusion"): CallTime(2, per_image=0.05, engine="incremental")}
    stages, per_unit = _stages([(unit, [work])], {}, times, calls=engine)  # type: ignore[list-item]
    assert per_unit["explanation/m/occlusion/0"] == pytest.approx(4 * 0.05)
    explain = next(s for s in stages if s.name == "explain")
    assert explain.forward == 400 and "occlusion" in explain.priced  # the passes stay, for the breakdown
    captum = {("m", "occlusion"): CallTime(2, per_image=0.05, engine="captum")}
    _, fallback = _stages([(unit, [work])], {}, times, calls=captum)  # type: ignore[list-item]
    assert fallback["explanation/m/occlusion/0"] == pytest.approx(work_seconds(work, times["m"]))


def test_only_occlusion_calls_carry_their_images() -> None:
    shape = (1, 32, 32)
    occ = explainer_work(create_explainer("occlusion"), "occlusion", 5, 4, shape)
    sal = explainer_work(create_explainer("saliency"), "saliency", 5, 4, shape)
    assert [w.images for w in occ if w.label == "occlusion" and w.forward > w.rows] == [4, 1]
    assert all(w.images == 0 for w in sal)


def test_the_plan_times_occlusion_once_then_reads_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "small.toml"
    path.write_text(
        f'cache_dir = "{tmp_path / "cache"}"\n'
        "[data]\nn_train = 40\nn_test = 8\nsize = 32\n"
        '[[models]]\nname = "m"\narch = "smallcnn"\narch_kwargs = { widths = [4, 4, 4, 4] }\n'
        '[training]\nepochs = 1\n[explain]\nn_images = 3\nbatch_size = 3\nmethods = ["occlusion"]\n'
    )
    cfg = load_config(path, profile="smoke")
    first = estimate_audit(cfg)
    explain = next(s for s in first.stages if s.name == "explain")
    assert explain.seconds > 0 and "occlusion" in explain.priced
    assert any("priced by its time measured per image" in line for line in plan_lines(first))
    timing = TimingCache(Path(str(cfg.cache_dir)))
    second = estimate_audit(cfg, timing=timing)
    assert timing.measured == 0  # pass times and the occlusion call both read back
    again = next(s for s in second.stages if s.name == "explain")
    assert again.seconds == pytest.approx(explain.seconds)


def test_a_damaged_cached_occlusion_timing_is_measured_again(tmp_path: Path) -> None:
    """A cache file with ``images: 0`` or a negative time is refused and the call timed again."""
    path = tmp_path / "small.toml"
    path.write_text(
        f'cache_dir = "{tmp_path / "cache"}"\n'
        "[data]\nn_train = 40\nn_test = 8\nsize = 16\n"
        '[[models]]\nname = "m"\narch = "smallcnn"\narch_kwargs = { widths = [4, 4, 4, 4] }\n'
        '[training]\nepochs = 1\n[explain]\nn_images = 2\nbatch_size = 2\nmethods = ["occlusion"]\n'
    )
    cfg = load_config(path, profile="smoke")
    estimate_audit(cfg)
    calls = [p for p in (tmp_path / "cache" / "timing").glob("*.json") if '"per_image"' in p.read_text()]
    assert len(calls) == 1
    bad_files = (
        '{"images": 0, "per_image": 1.0, "engine": null}',
        '{"images": 2, "per_image": -1.0, "engine": "x"}',
    )
    for bad in bad_files:
        calls[0].write_text(bad)
        timing = TimingCache(Path(str(cfg.cache_dir)))
        again = next(s for s in estimate_audit(cfg, timing=timing).stages if s.name == "explain")
        assert timing.measured == 1 and again.seconds > 0
