"""The audit's cost plan: passes per stage × per-pass times measured here → wall time and peak memory.

``robustxai plan`` prints it, and ``robustxai audit`` prints it first. For every stage (training, sanity,
attacks, explanations, manipulation, report) it counts the images the stage pushes forward and backward
(:mod:`robustxai.audit._passes`, from the methods' own ``passes`` declarations), multiplies them by per-pass
times measured on this machine with the real models at the batch sizes they run at
(:mod:`robustxai.audit._timing`, cached), and adds up. Cached trained models cost nothing; an uncached one
costs its epochs (an upper bound: early stopping may end sooner). It also says what a GPU (measured when one
is present, else an assumed speed-up that it names as such) and an N-worker Ray cluster would take, and
``max_minutes`` trims the explained and manipulated images until the prediction fits. With ``[executor]
processes = N`` (N ≥ 2) the units' passes are timed on one thread, as the workers run them, and their wall
time is the executor's own schedule (:func:`~robustxai.audit._schedule.makespan`).
"""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from robustxai._errors import ConfigError
from robustxai.audit._batching import settle_models, timing_spec, training_time
from robustxai.audit._cache import cache_root
from robustxai.audit._config import AuditConfig
from robustxai.audit._estimate_price import (
    DRIVER_STAGES,
    CallTimes,
    StepTimes,
    call_seconds,
    local_processes,
    pick_batches,
    step_seconds,
    torch_threads,
    units_wall,
    wall_total,
    work_bytes,
    work_seconds,
)
from robustxai.audit._executor import choose_device
from robustxai.audit._kinds import UNIT_KINDS  # noqa: F401  (registers every unit kind)
from robustxai.audit._passes import Shape, Work, unit_work
from robustxai.audit._plan import AuditData, Unit, inapplicable, plan_units
from robustxai.audit._progress import LogProgress, Progress, format_seconds, stage_name
from robustxai.audit._stages_data import build_datasets
from robustxai.audit._stages_eval import explainer_for
from robustxai.audit._stages_manip import _attack as manipulation_attack
from robustxai.audit._stages_models import fit_config_for, models_to_train, planning_model
from robustxai.audit._timing import PassTime, TimingCache
from robustxai.audit._timing_explain import TIMED_IMAGES, CallCache
from robustxai.audit._timing_manip import StepCache
from robustxai.models import ModelWrapper
from robustxai.training._fit import epoch_passes

log = logging.getLogger(__name__)

STAGES = ("training", "sanity", "attack", "explain", "manipulate", "report")
#: Speed-up of one pass on a GPU over this CPU assumed when no CUDA device is present to measure it.
ASSUMED_GPU_SPEEDUP = 20.0
#: Ray: seconds to start (``ray.init``) and per new worker (its torch import), measured (DESIGN.md).
RAY_START_S, RAY_WORKER_S = 4.0, 3.0
#: Report: seconds fixed and per unit of work (rough: tables, figures and HTML are not passes).
REPORT_S_FIXED, REPORT_S_PER_UNIT = 3.0, 0.05


@dataclass
class StagePlan:
    """One stage's predicted cost."""

    name: str
    forward: int = 0
    backward: int = 0
    train: int = 0
    seconds: float = 0.0
    peak_bytes: int = 0
    by_method: dict[str, list[int]] = field(default_factory=dict)  # label → [forward, backward, train]
    priced: dict[str, str] = field(default_factory=dict)  # label → how a measured call priced it
    note: str = ""


@dataclass
class AuditEstimate:
    """What ``robustxai plan`` prints: per-stage passes, predicted seconds and memory; GPU and Ray.

    Attributes:
        cfg: The configuration the prediction is for (trimmed by ``max_minutes`` when it had to be).
        stages: The stages in the order they run.
        unit_seconds: Predicted seconds of wall time of every unit by id, its own time ÷ ``processes`` (the
            progress display starts from these).
        trimmed: What ``max_minutes`` trimmed, one phrase each (empty when nothing was).
        device: Where the passes were timed.
        models: Per model: the measured pass times by batch size.
        training_models: Per model to train: its measured training step at the training batch size.
        gpu_seconds: Predicted total on a GPU; ``gpu_measured`` says whether its passes were timed.
        workers: Ray workers of the cluster projection.
        to_train: Models that would be trained now (not cached).
        processes: The local executor's worker processes (1: units in the driver, on torch's threads).
        units_wall: With ``processes`` ≥ 2, the units' predicted wall time (their schedule and the
            workers' start); the stages' seconds are then one thread's time.
    """

    cfg: AuditConfig
    stages: list[StagePlan]
    unit_seconds: dict[str, float]
    trimmed: list[str]
    device: str
    models: dict[str, dict[int, PassTime]]
    gpu_seconds: float
    gpu_measured: bool
    gpu_speedup: float
    workers: int
    to_train: list[str]
    measured: int = 0
    remeasured: str = ""  # cached timings measured again and why (TimingCache.remeasured_text)
    settled: list[str] = field(default_factory=list)  # per-model layout and "auto" batch size, one line each
    training_models: dict[str, dict[int, PassTime]] = field(default_factory=dict)  # training steps, float32
    processes: int = 1
    units_wall: float = 0.0
    skipped: list[str] = field(default_factory=list)  # "model: method skipped (kind): reason", not priced

    @property
    def seconds(self) -> float:
        """The predicted total (wall time)."""
        return wall_total(self.stages, self.units_wall, self.processes)

    @property
    def peak_bytes(self) -> int:
        """The largest stage's peak memory estimate."""
        return max((s.peak_bytes for s in self.stages), default=0)

    def ray_seconds(self, workers: int | None = None) -> float:
        """Predicted total on ``workers`` Ray workers: training stays on the driver, units spread out."""
        n = max(int(workers or self.workers), 1)
        fixed = sum(s.seconds for s in self.stages if s.name in DRIVER_STAGES)
        parallel = sum(s.seconds for s in self.stages if s.name not in DRIVER_STAGES)
        return fixed + parallel / n + RAY_START_S + RAY_WORKER_S


def _same(model: ModelWrapper) -> ModelWrapper:
    return model


class Planner:
    """Everything the estimate needs that does not depend on the trimmed image counts.

    Builds the data (cached), one untrained copy of each model (architecture only: its weights do not change
    a pass's time), the plan's skipped pairs, and times the passes (cached by :class:`TimingCache`).
    """

    def __init__(
        self, cfg: AuditConfig, progress: Progress | None = None, timing: TimingCache | None = None
    ) -> None:
        self.cfg = cfg
        prog = progress or LogProgress()
        cache = cache_root(cfg.cache_dir)
        self.timing = timing or TimingCache(cache)
        train_ds, test_ds, self.data_info = build_datasets(cfg, cache, prog)
        self.n_train = len(train_ds)
        self.data = AuditData(test_ds, cfg.explain.n_images, Path("."))
        self.shape: Shape = tuple(int(v) for v in test_ds[0].image.shape)  # type: ignore[assignment]
        self.models = {m.name: self._model(m.name) for m in cfg.models}
        self.device = choose_device(cfg.executor.device, cuda_available=torch.cuda.is_available())
        self.cfg, self.settled = settle_models(cfg, dict(self.models), self.shape, self.timing, self.device)
        self.skipped = inapplicable(cfg, self.models)
        self.to_train = models_to_train(cfg, self.data_info, cache)
        self.step_cache = StepCache(self.timing)
        self.call_cache = CallCache(self.timing)

    def _model(self, name: str) -> ModelWrapper:
        return planning_model(next(mc for mc in self.cfg.models if mc.name == name), self.data_info)

    def works(self, cfg: AuditConfig) -> tuple[list[tuple[Unit, list[Work]]], dict[str, list[Work]]]:
        """Every unit's work under ``cfg`` (image counts may be trimmed), and each model's training."""
        data = copy.copy(self.data)
        data.subset = self.data.subset[: cfg.explain.n_images]
        units = plan_units(cfg, data, self.skipped)
        per_unit = [(u, unit_work(u, cfg, self.shape)) for u in units]
        training: dict[str, list[Work]] = {}
        for m in cfg.models:
            if m.name in self.to_train:
                fit_cfg = fit_config_for(cfg, m)
                steps, grads, fwd = epoch_passes(fit_cfg, self.n_train)
                e, bs = fit_cfg.epochs, fit_cfg.batch_size
                training[m.name] = [Work("training", e * (fwd + grads), e * grads, bs, e * steps)]
        return per_unit, training

    def times(
        self, per_unit: list[tuple[Unit, list[Work]]], training: dict[str, list[Work]], device: str
    ) -> dict[str, dict[int, PassTime]]:
        """Measured (or cached) pass times of each model at the batch sizes its work runs at."""
        rows: dict[str, list[int]] = defaultdict(list)
        for u, works in per_unit:
            rows[u.model] += [w.rows for w in works]
        out: dict[str, dict[int, PassTime]] = {}
        for name, model in self.models.items():
            spec = timing_spec(self.cfg, name, self.shape)
            batches = pick_batches(rows.get(name, [])) or [min(self.cfg.batch_size, len(self.data))]
            get = partial(self.timing.get, spec, partial(_same, model), self.shape)
            out[name] = {b: get(b, device) for b in batches}
        return out

    def train_times(self, training: dict[str, list[Work]], device: str) -> dict[str, dict[int, PassTime]]:
        """Measured (or cached) training steps of each model to train, in float32 at its training batch.

        Kept apart from :meth:`times` so that no evaluation pass is priced by a training measurement (which
        does not time the input-gradient pass where training runs none:
        :func:`~robustxai.audit._batching.training_time`).
        """
        out: dict[str, dict[int, PassTime]] = {}
        for name, works in training.items():
            for w in works:
                out.setdefault(name, {})[w.rows] = training_time(
                    self.timing, self.cfg, name, self.models[name], self.shape, w.rows, device, w.backward > 0
                )
        return out

    def step_times(self, per_unit: list[tuple[Unit, list[Work]]], device: str) -> StepTimes:
        """Measured (or cached) manipulation steps of each attacked model × method at its batch sizes.

        Timed on the first annotated test images (the attack's SSIM floor acts on real images, not noise).
        """
        out: StepTimes = {}
        mc = self.cfg.manipulation
        for u, works in per_unit:
            for w in works:
                if not w.steps or mc is None or u.explainer is None:
                    continue
                found = out.setdefault((u.model, w.label), {})
                if w.rows in found:
                    continue
                images, labels = self._first_images(w.rows)
                spec = timing_spec(self.cfg, u.model, self.shape)
                attack = manipulation_attack(mc, u.explainer)
                model = self.models[u.model]
                found[w.rows] = self.step_cache.get(spec, model, attack, images, labels, device)
        return out

    def call_times(self, per_unit: list[tuple[Unit, list[Work]]], device: str) -> CallTimes:
        """Measured (or cached) calls of each model × explainer priced by a call (occlusion).

        Timed on :data:`TIMED_IMAGES` of the first annotated test images, with the explainer configured
        as the explanation stage runs it.
        """
        out: CallTimes = {}
        for u, works in per_unit:
            for w in works:
                if not w.images or (u.model, w.label) in out:
                    continue
                images, _ = self._first_images(TIMED_IMAGES)
                spec = timing_spec(self.cfg, u.model, self.shape)
                explainer = explainer_for(self.cfg, w.label, u.model)
                out[(u.model, w.label)] = self.call_cache.get(
                    spec, self.models[u.model], explainer, images, device
                )
        return out

    def _first_images(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` annotated test images (repeated when there are fewer) and their labels."""
        subset = self.data.subset or list(range(len(self.data)))
        idx = tuple(subset[i % len(subset)] for i in range(n))
        return self.data.load(idx)


def _stages(
    per_unit: list[tuple[Unit, list[Work]]],
    training: dict[str, list[Work]],
    times: dict[str, dict[int, PassTime]],
    steps: StepTimes | None = None,
    calls: CallTimes | None = None,
    train_times: dict[str, dict[int, PassTime]] | None = None,
) -> tuple[list[StagePlan], dict[str, float]]:
    stages = {name: StagePlan(name) for name in STAGES}
    unit_seconds: dict[str, float] = {}

    def add(stage: StagePlan, work: Work, model: str, own: dict[int, PassTime] | None = None) -> float:
        measured = step_seconds(work, model, steps or {})
        if measured is None:
            measured = call_seconds(work, model, calls or {})
            if measured is not None:
                stage.priced[work.label] = "its time measured per image"
        measured_times = own or times[model]
        seconds = work_seconds(work, measured_times) if measured is None else measured
        stage.forward += work.forward
        stage.backward += work.backward
        stage.train += work.train
        stage.seconds += seconds
        stage.peak_bytes = max(stage.peak_bytes, work_bytes(work, measured_times))
        counts = stage.by_method.setdefault(work.label, [0, 0, 0])
        counts[0] += work.forward
        counts[1] += work.backward
        counts[2] += work.train
        return seconds

    for model, works in training.items():
        for w in works:
            add(stages["training"], w, model, (train_times or {}).get(model))
    for unit, works in per_unit:
        stage = stages.get(stage_name(unit.kind), stages["report"])
        unit_seconds[unit.id] = sum(add(stage, w, unit.model) for w in works)
    stages["report"].seconds = REPORT_S_FIXED + REPORT_S_PER_UNIT * len(per_unit)
    stages["report"].note = "rough: tables and figures, not passes"
    return list(stages.values()), unit_seconds


def estimate_audit(
    cfg: AuditConfig,
    *,
    workers: int = 4,
    max_minutes: float | None = None,
    gpu_speedup: float = ASSUMED_GPU_SPEEDUP,
    progress: Progress | None = None,
    timing: TimingCache | None = None,
) -> AuditEstimate:
    """Predict the audit's cost (see the module docstring); trim images to fit ``max_minutes``.

    Raises:
        ConfigError: When even one explained and one manipulated image cannot fit ``max_minutes``.
    """
    planner = Planner(cfg, progress, timing)
    cfg = planner.cfg  # layouts and "auto" batch sizes settled
    processes = local_processes(cfg, planner.device)
    per_unit, training = planner.works(cfg)
    train = planner.train_times(training, planner.device)  # training runs in the driver, on its threads
    with torch_threads(1 if processes > 1 else None):  # a worker process computes on one thread
        times = planner.times(per_unit, training, planner.device)
        steps = planner.step_times(per_unit, planner.device)
        calls = planner.call_times(per_unit, planner.device)
    trimmed: list[str] = []
    if max_minutes is not None:
        from robustxai.audit._estimate_trim import trim_to_fit

        cfg, trimmed = trim_to_fit(
            cfg, max_minutes * 60.0, lambda c: _total(planner, c, times, steps, calls, train, processes)
        )
        per_unit, training = planner.works(cfg)
    stages, unit_seconds = _stages(per_unit, training, times, steps, calls, train)
    wall = units_wall(per_unit, unit_seconds, processes)
    total = wall_total(stages, wall, processes)
    gpu_measured = torch.cuda.is_available() or planner.device == "cuda"
    if planner.device == "cuda":  # the plan itself was timed on the GPU
        gpu_total = total
    elif gpu_measured:
        gpu_times = planner.times(per_unit, training, "cuda")
        gpu_train = planner.train_times(training, "cuda")
        gpu_total = sum(s.seconds for s in _stages(per_unit, training, gpu_times, train_times=gpu_train)[0])
    else:
        gpu_total = total / gpu_speedup
    return AuditEstimate(
        cfg=cfg,
        stages=stages,
        unit_seconds={k: v / processes for k, v in unit_seconds.items()},  # each unit's share of wall time
        trimmed=trimmed,
        device=planner.device,
        models=times,
        training_models=train,
        gpu_seconds=gpu_total,
        gpu_measured=gpu_measured,
        gpu_speedup=gpu_speedup,
        workers=workers,
        to_train=planner.to_train,
        measured=planner.timing.measured,
        remeasured=planner.timing.remeasured_text(),
        settled=planner.settled,
        processes=processes,
        units_wall=wall,
        skipped=[f"{s.model}: {s.line()}" for s in planner.skipped],
    )


def _total(
    planner: Planner,
    cfg: AuditConfig,
    times: dict[str, dict[int, PassTime]],
    steps: StepTimes,
    calls: CallTimes | None = None,
    train_times: dict[str, dict[int, PassTime]] | None = None,
    processes: int = 1,
) -> float:
    per_unit, training = planner.works(cfg)
    stages, unit_seconds = _stages(per_unit, training, times, steps, calls, train_times)
    return wall_total(stages, units_wall(per_unit, unit_seconds, processes), processes)


def check_fits(estimate: AuditEstimate, max_minutes: float) -> None:
    """Refuse (one line) a plan whose predicted total exceeds ``max_minutes``."""
    if estimate.seconds > max_minutes * 60:
        raise ConfigError(
            f"the audit is predicted to take {format_seconds(estimate.seconds)}, more than --max-minutes "
            f"{max_minutes:g}, even with the fewest images"
        )
