"""Per-model batch size, memory layout and precision (``batch_size``, ``channels_last``, ``precision``).

All three are settled before the plan and again before the run. ``precision = "bfloat16"`` (or
``"float16"`` on a GPU) runs the model's forward passes under ``torch.autocast``
(:meth:`~robustxai.models.ModelWrapper.set_precision`: logits, maps and input gradients stay float32); the
pass times are cached per precision.

A model's ``batch_size`` is the rows per pass of its robustness units (attacks and predictions, in shards of
:data:`~robustxai.audit._plan.ROBUSTNESS_SHARD_BATCHES` batches) and of its explainers (images per call and,
for explainers with a ``batch_size`` keyword the config does not set, image × perturbation rows per pass).
Unset, the audit's ``batch_size`` is used and nothing changes. Neither setting changes a prediction, a
deterministic attack's images or a map beyond float rounding (tested): batches only group rows, and the
layout only orders memory. An attack with a random start (PGD's default, APGD) seeds its start per call, so
a different batch gives each image a different (equally valid) start and the robust accuracy may move by
that sampling noise.

``batch_size = "auto"`` (:func:`auto_batch`, the rule in :func:`choose_batch`): starting at 1, the batch
doubles while (a) the doubled batch stays within the audit's ``batch_size``, (b) its estimated memory — the
parameters plus the activations a gradient pass saves, measured per image at the last batch and scaled —
fits :data:`AUTO_MEMORY_FRACTION` of the free memory, on a CPU at most :data:`AUTO_CPU_PASS_BYTES`
(:func:`pass_budget`; free memory: ``MemAvailable`` of ``/proc/meminfo``; on CUDA
``torch.cuda.mem_get_info``), and (c) the measured per-image time of a forward+backward pass at the doubled
batch is at least :data:`AUTO_MIN_GAIN` below the current one. The pass times come from
:class:`~robustxai.audit._timing.TimingCache` (cached per model, batch and device), so a second plan times
nothing. ``channels_last = true`` converts a convolutional model (a ``Conv2d`` and no self-attention) to
the channels-last layout; ``"auto"`` does so only where a timed forward+backward pass of
:data:`AUTO_LAYOUT_BATCH` images is at least :data:`AUTO_MIN_GAIN` faster in it (ResNet-50: yes; timm's
ConvNeXt, which permutes to channels-last itself: no). A transformer is never converted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustxai._errors import ConfigError
from robustxai.audit._config import AuditConfig, ModelConfig
from robustxai.audit._timing import PassTime, TimingCache
from robustxai.models import ModelWrapper
from robustxai.models._wrapper import full_precision
from robustxai.results._store import Store

log = logging.getLogger(__name__)

#: Share of the free memory one pass of the chosen batch may take (other passes, maps and images need room).
AUTO_MEMORY_FRACTION = 0.25
#: On a CPU, and whatever is free, one pass may take at most this much: beyond 2–4 rows of a 224-px backbone
#: the per-image time stops improving on a CPU, and each probe of a larger batch would itself take the
#: memory (a ResNet-50 probe of 8 rows lifted the plan's peak RSS from ≈ 2.5 to 3.3 GB).
AUTO_CPU_PASS_BYTES = 512 << 20
#: A doubled batch must cut the per-image forward+backward time by at least this share to be taken.
AUTO_MIN_GAIN = 0.05
#: Rows of the two timed passes (default and channels-last layout) that decide ``channels_last = "auto"``.
AUTO_LAYOUT_BATCH = 2


def model_config(cfg: AuditConfig, name: str) -> ModelConfig | None:
    """The ``[[models]]`` entry called ``name`` (``None`` for a name the config does not list)."""
    return next((m for m in cfg.models if m.name == name), None)


def model_batch(cfg: AuditConfig, name: str) -> int:
    """Rows per pass of model ``name``: its own ``batch_size``, else the audit's.

    Raises:
        ConfigError: If the model's ``"auto"`` was not resolved first (:func:`settle_models`).
    """
    m = model_config(cfg, name)
    if m is None or m.batch_size is None:
        return cfg.batch_size
    if m.batch_size == "auto":
        raise ConfigError(f"model {name!r}: batch_size 'auto' must be resolved before the plan")
    return int(m.batch_size)


def explain_rows(cfg: AuditConfig, name: str) -> int | None:
    """The rows-per-pass cap of model ``name``'s explainers: its own ``batch_size``, or ``None`` (theirs)."""
    m = model_config(cfg, name)
    return None if m is None or m.batch_size is None else model_batch(cfg, name)


def is_convolutional(model: nn.Module) -> bool:
    """Whether ``model`` convolves 4-D maps and has no self-attention (``qkv`` or ``MultiheadAttention``)."""
    mods = list(model.modules())
    attention = any(isinstance(m, nn.MultiheadAttention) or hasattr(m, "qkv") for m in mods)
    return not attention and any(isinstance(m, nn.Conv2d) for m in mods)


def free_memory(device: str = "cpu") -> int:
    """Free bytes of ``device``: CUDA's ``mem_get_info``, else ``MemAvailable`` of ``/proc/meminfo``."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 4 << 30  # no /proc (not Linux): assume 4 GiB


def _fits(t: PassTime, batch: int, budget: float) -> bool:
    """Whether a gradient pass of ``batch`` rows, scaled from measurement ``t``, fits ``budget`` bytes."""
    return t.param_bytes + t.activation_bytes / t.batch * batch <= budget


def pass_budget(free_bytes: int, device: str = "cpu", fraction: float = AUTO_MEMORY_FRACTION) -> float:
    """Bytes one pass of an ``"auto"`` batch may take.

    ``fraction`` of the free memory; on a CPU at most :data:`AUTO_CPU_PASS_BYTES`.
    """
    budget = fraction * free_bytes
    return budget if torch.device(device).type == "cuda" else min(budget, float(AUTO_CPU_PASS_BYTES))


def choose_batch(
    times: Sequence[PassTime],
    free_bytes: int,
    cap: int,
    fraction: float = AUTO_MEMORY_FRACTION,
    gain: float = AUTO_MIN_GAIN,
    budget: float | None = None,
) -> int:
    """The ``"auto"`` rule (module docstring) applied to measurements at batches 1, 2, 4, ….

    ``budget``: the bytes a pass may take (default ``fraction × free_bytes``; see :func:`pass_budget`).
    """
    ordered = sorted(times, key=lambda t: t.batch)
    if not ordered:
        return 1
    limit = fraction * free_bytes if budget is None else budget
    chosen = ordered[0]
    for t in ordered[1:]:
        if t.batch > cap or not _fits(chosen, t.batch, limit):
            break
        if t.per_row("gradient") > (1.0 - gain) * chosen.per_row("gradient"):
            break
        chosen = t
    return chosen.batch


def auto_batch(
    get: Callable[[int], PassTime], free_bytes: int, cap: int, budget: float | None = None
) -> tuple[int, list[PassTime]]:
    """Measure batches 1, 2, 4, … only as far as :func:`choose_batch` can go; its choice and the timings.

    ``budget``: bytes a pass may take (default: :data:`AUTO_MEMORY_FRACTION` of ``free_bytes``).
    """
    limit = AUTO_MEMORY_FRACTION * free_bytes if budget is None else budget
    times = [get(1)]
    while times[-1].batch * 2 <= cap and _fits(times[-1], times[-1].batch * 2, limit):
        times.append(get(times[-1].batch * 2))
        if choose_batch(times, free_bytes, cap, budget=limit) != times[-1].batch:
            break
    return choose_batch(times, free_bytes, cap, budget=limit), times


def timing_spec(cfg: AuditConfig, name: str, shape: tuple[int, int, int]) -> list[Any]:
    """What identifies model ``name``'s pass times in the timing cache (its layout included)."""
    m = model_config(cfg, name)
    assert m is not None
    return _spec(m, shape, m.channels_last is True)


def training_time(
    timing: TimingCache,
    cfg: AuditConfig,
    name: str,
    model: nn.Module,
    shape: tuple[int, int, int],
    rows: int,
    device: str,
    input_gradients: bool = True,
) -> PassTime:
    """A training step of model ``name`` at ``rows``, timed as training runs it: in float32.

    Training ignores ``[[models]] precision`` (autocast is an evaluation setting), so the step is timed with
    the model in float32 and cached under the float32 spec — a bfloat16 step would understate the time and
    the memory a float32 step takes. ``input_gradients=False`` (standard training: no attack steps) skips
    the forward + backward pass to the input, which training never runs and which held most of the plan's
    memory for a 224-px backbone (see :func:`~robustxai.audit._timing.measure`).
    """
    m = model_config(cfg, name)
    assert m is not None
    spec = _spec(m.model_copy(update={"precision": "float32"}), shape, m.channels_last is True)
    with full_precision(model):
        return timing.get(spec, lambda: model, shape, rows, device, train=True, gradient=input_gradients)


def _spec(m: ModelConfig, shape: tuple[int, int, int], channels_last: bool) -> list[Any]:
    where = ["checkpoint", str(Path(m.checkpoint).resolve())] if m.checkpoint else [m.arch, m.arch_kwargs]
    spec: list[Any] = [*where, list(shape)]
    if m.precision != "float32":  # float32 keeps the spec (and the cached times) it always had
        spec.append(m.precision)
    return [*spec, "channels_last"] if channels_last else spec


def settle_models(
    cfg: AuditConfig,
    models: dict[str, nn.Module],
    shape: tuple[int, int, int],
    timing: TimingCache,
    device: str = "cpu",
    earlier: dict[str, int] | None = None,
) -> tuple[AuditConfig, list[str]]:
    """Switch layouts (in place) and resolve ``"auto"`` settings; the settled config and one line each.

    ``earlier``: batch sizes a resumed run settled before (kept, so its shards stay the same).
    """
    settled: list[ModelConfig] = []
    lines: list[str] = []
    for m in cfg.models:
        model = models.get(m.name)
        if isinstance(model, ModelWrapper) and m.precision != model.precision:
            model.set_precision(m.precision)
            lines.append(f"{m.name}: forward passes in {m.precision} (autocast; maps, gradients float32)")
        if model is not None and m.channels_last is not False:
            m = m.model_copy(update={"channels_last": _layout(m, model, shape, timing, device, lines)})
        if m.batch_size == "auto":
            chosen = _auto(cfg, m, model, shape, timing, device, (earlier or {}).get(m.name), lines)
            m = m.model_copy(update={"batch_size": chosen})
        settled.append(m)
    return cfg.model_copy(update={"models": settled}), lines


def _layout(
    m: ModelConfig,
    model: nn.Module,
    shape: tuple[int, int, int],
    timing: TimingCache,
    device: str,
    lines: list[str],
) -> bool:
    """Whether model ``m`` runs channels-last (switched in place): true, or ``"auto"`` and measured faster."""
    if not is_convolutional(model):
        if m.channels_last is True:
            lines.append(f"{m.name}: channels_last ignored (not a convolutional model)")
        return False
    if m.channels_last == "auto":
        default = timing.get(_spec(m, shape, False), lambda: model, shape, AUTO_LAYOUT_BATCH, device)
        model.to(memory_format=torch.channels_last)
        last = timing.get(_spec(m, shape, True), lambda: model, shape, AUTO_LAYOUT_BATCH, device)
        ms = f"{1000 * default.per_row('gradient'):.1f} → {1000 * last.per_row('gradient'):.1f} ms per image"
        if last.gradient > (1.0 - AUTO_MIN_GAIN) * default.gradient:
            model.to(memory_format=torch.contiguous_format)
            lines.append(f"{m.name}: default memory layout (auto: channels_last {ms} forward+backward)")
            return False
        lines.append(f"{m.name}: channels_last memory layout (auto: {ms} forward+backward)")
        return True
    model.to(memory_format=torch.channels_last)
    lines.append(f"{m.name}: channels_last memory layout")
    return True


def _auto(
    cfg: AuditConfig,
    m: ModelConfig,
    model: nn.Module | None,
    shape: tuple[int, int, int],
    timing: TimingCache,
    device: str,
    earlier: int | None,
    lines: list[str],
) -> int:
    """One model's ``"auto"`` batch size (or the one a resumed run chose), with its plan line."""
    if earlier is not None:
        lines.append(f"{m.name}: batch size {earlier} (auto, as the run being resumed chose)")
        return int(earlier)
    if model is None:
        return cfg.batch_size
    spec = _spec(m, shape, m.channels_last is True)
    free = free_memory(device)
    budget = pass_budget(free, device)
    batch, times = auto_batch(
        lambda b: timing.get(spec, lambda: model, shape, b, device), free, cfg.batch_size, budget
    )
    per_image = ", ".join(f"{t.batch}: {1000 * t.per_row('gradient'):.1f}" for t in times)
    lines.append(
        f"{m.name}: batch size {batch} (auto: forward+backward ms per image at batch {per_image}; "
        f"{free / 2**30:.1f} GiB free, ≤ {budget / 2**20:,.0f} MiB per pass, cap {cfg.batch_size})"
    )
    return batch


#: Store meta key of the batch sizes a run settled (a resumed run keeps them: its shards stay the same).
BATCHES_META = "model_batches"


def _settles(m: ModelConfig) -> bool:
    """Whether settling changes anything of model ``m``: an "auto" batch size, a layout or a precision."""
    return m.batch_size == "auto" or m.channels_last is not False or m.precision != "float32"


def settle_for_run(
    cfg: AuditConfig, models: Mapping[str, nn.Module], shape: Sequence[int], cache: Path, store: Store
) -> AuditConfig:
    """:func:`settle_models` for the runner: logs its lines and keeps a resumed run's batch sizes."""
    if not any(_settles(m) for m in cfg.models):
        return cfg
    c, h, w = (int(v) for v in shape)
    saved = store.get_meta(BATCHES_META, {})
    earlier = {str(k): v for k, v in saved.items() if isinstance(v, int)} if isinstance(saved, dict) else {}
    device = cfg.executor.device or "cpu"
    cfg, lines = settle_models(cfg, dict(models), (c, h, w), TimingCache(cache), device, earlier)
    for line in lines:
        log.info("%s", line)
    store.set_meta(BATCHES_META, {m.name: m.batch_size for m in cfg.models if isinstance(m.batch_size, int)})
    return cfg
