"""Per-pass times and activation memory of a model, measured with a few real passes and cached on disk.

The audit's plan (:mod:`robustxai.audit._estimate`) multiplies pass counts by these times. A measurement is a
warm-up pass and then the median of ``repeats`` (or more, for fast passes) timed passes, at one batch size,
of three kinds:

- ``forward``: logits under ``torch.inference_mode`` (predictions, occlusion, LIME);
- ``gradient``: forward and backward to the input only, as attacks and gradient explainers run;
- ``train``: forward and backward with parameter gradients and an optimiser step (training).

Memory: the bytes autograd saves for the backward pass (every tensor a ``gradient`` pass keeps, counted once)
are the activations; on a CUDA device ``torch.cuda.max_memory_allocated`` is used instead. Results are cached
as JSON under ``<cache>/timing/``, keyed by the model's specification, the input shape, the batch size, the
device, the number of threads and the torch version, so a second plan does not time again; each file also
records the load, threads and date it was measured under, and a timing whose conditions no longer hold is
measured again (:mod:`robustxai.audit._timing_conditions`).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from robustxai._atomic import write_text
from robustxai._errors import RobustXAIError
from robustxai.audit._cache import key_of
from robustxai.audit._timing_conditions import FIELD, Conditions, Stale, stale, summary

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: A cached measurement: a dataclass written as JSON and read back with its constructor's checks.
_T = TypeVar("_T", bound="DataclassInstance")

TIMING_DIR = "timing"
TIMING_VERSION = "timing-3"  # bump when what a measurement means changes (2: median; 3: fast 2×2 pool)
KINDS = ("forward", "gradient", "train")


@dataclass(frozen=True)
class PassTime:
    """Seconds per pass of ``batch`` rows, and memory, of one model at one batch size on one device.

    Attributes:
        batch: Rows per pass.
        forward: Seconds of one forward pass (no graph).
        gradient: Seconds of one forward + backward pass to the input.
        train: Seconds of one training step (forward, backward with parameter gradients, optimiser step);
            ``None`` when it was not measured.
        activation_bytes: Bytes the backward pass needs (saved activations) at this batch size.
        param_bytes: Bytes of the parameters and buffers.
    """

    batch: int
    forward: float
    gradient: float
    train: float | None
    activation_bytes: int
    param_bytes: int

    def per_row(self, kind: str) -> float:
        """Seconds per row (image) of a pass of ``kind`` at this batch size."""
        value = getattr(self, kind)
        if value is None:  # a training step costs about a gradient pass and its parameter gradients
            value = 1.5 * self.gradient
        return float(value) / self.batch


#: Keep timing a fast pass until this many seconds were spent on it (at most :data:`MAX_REPEATS` passes).
MIN_TIMED_S = 0.3
MAX_REPEATS = 25


def _best(fn: Callable[[], None], repeats: int, sync: Callable[[], None]) -> float:
    """The median of at least ``repeats`` timed calls after a warm-up; a fast call is repeated for longer.

    The median, not the minimum: a whole audit runs at the machine's sustained pace, which on a shared
    machine is slower than its luckiest pass.
    """
    fn()  # warm-up: allocator, kernels, lazy modules
    sync()
    took: list[float] = []
    while len(took) < max(repeats, 1) or (sum(took) < MIN_TIMED_S and len(took) < MAX_REPEATS):
        t = time.perf_counter()
        fn()
        sync()
        took.append(time.perf_counter() - t)
    return statistics.median(took)


def _saved_bytes(model: nn.Module, x: torch.Tensor, to_input: bool = True) -> int:
    """Bytes of the tensors autograd saves in a forward pass with a graph to the input (each once).

    ``to_input=False``: in a training forward pass instead (train mode, the graph to the parameters that
    require gradients only — a frozen backbone saves nothing).
    """
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            seen[key] = key[1]
        except (RuntimeError, NotImplementedError):  # storage-less tensors (e.g. some views)
            seen[(id(t), 0)] = t.nelement() * t.element_size()
        return t

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    was_training = model.training
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if to_input:
            model(x.detach().clone().requires_grad_(True)).sum()
        else:  # train mode updates batch-norm statistics: the buffers are put back
            buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
            model.train()
            try:
                model(x.detach()).sum()
            finally:
                model.train(was_training)
                with torch.no_grad():
                    for k, v in model.named_buffers():
                        v.copy_(buffers[k])
    return sum(n for (ptr, _), n in seen.items() if ptr not in params)


def measure(
    model: nn.Module,
    shape: tuple[int, int, int],
    batch: int,
    device: torch.device | str = "cpu",
    *,
    repeats: int = 3,
    train: bool = False,
    gradient: bool = True,
) -> PassTime:
    """Time a few passes of ``model`` on random ``[batch, *shape]`` images in [0, 1].

    The model's weights, mode and device are restored afterwards.

    Args:
        model: The model (logits out).
        shape: ``(C, H, W)`` of one image.
        batch: Rows per pass.
        device: Where the passes run.
        repeats: Timed passes of each kind after one warm-up (the best is kept).
        train: Also time a training step.
        gradient: Time the forward + backward pass to the input. ``False`` (a training step whose
            training needs no input gradients, e.g. standard training of a frozen backbone): that pass,
            which saves every layer's activations, is not run — at a 224-px backbone's training batch it
            held gigabytes — and the training step's time stands in for it; the activation bytes are
            then the ones the training step saves.
    """
    dev = torch.device(device)
    home = next((p.device for p in model.parameters()), dev)
    model = model.to(dev)
    x = torch.rand((batch, *shape), device=dev)
    cuda = dev.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    was_training = model.training
    model.eval()

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    def input_gradient() -> None:
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xi).sum(), xi)

    t_fwd = _best(forward, repeats, sync)
    if gradient:
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        t_grad = _best(input_gradient, repeats, sync)
        activations = int(torch.cuda.max_memory_allocated(dev) - base) if cuda else _saved_bytes(model, x)
    t_train = _time_train(model, x, repeats, sync) if train else None
    if not gradient:  # a stand-in, not measured (docstring); memory: what the training forward saves
        t_grad = t_train if t_train is not None else 2 * t_fwd
        activations = _saved_bytes(model, x, to_input=False)
    model.train(was_training)
    tensors = [*model.parameters(), *model.buffers()]
    param_bytes = sum(t.nelement() * t.element_size() for t in tensors)
    model.to(home)  # back where it was (a GPU measurement leaves the CPU model on the CPU)
    return PassTime(batch, t_fwd, t_grad, t_train, activations, param_bytes)


def _time_train(model: nn.Module, x: torch.Tensor, repeats: int, sync: Callable[[], None]) -> float | None:
    """Seconds of one training step (Adam), with the weights restored afterwards; None if nothing trains."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        return None
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(trainable, lr=0.0)

    def step() -> None:
        model.train()
        loss = model(x).logsumexp(dim=1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    try:
        return _best(step, repeats, sync)
    finally:
        model.load_state_dict(state)
        for p in trainable:
            p.grad = None
        model.eval()


def timing_key(
    spec: object, shape: tuple[int, int, int], batch: int, device: str, train: bool, gradient: bool = True
) -> str:
    """The cache key of one measurement: model spec, input, batch, device, threads and torch version."""
    threads = torch.get_num_threads()
    parts: list[object] = [TIMING_VERSION, spec, list(shape), batch, device, threads, torch.__version__]
    return key_of(*parts, train) if gradient else key_of(*parts, train, "no input gradient")


class TimingCache:
    """Measurements cached as JSON files under ``<cache>/timing`` (one per key).

    Args:
        root: The cache directory (:func:`robustxai.audit._cache.cache_root`); ``None`` keeps them in memory.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = None if root is None else Path(root) / TIMING_DIR
        self._memory: dict[str, PassTime] = {}
        #: How many measurements this cache made (a test checks that a second plan makes none).
        self.measured = 0
        #: Why each cached timing that no longer held was measured again (in :attr:`measured` too).
        self.remeasured: list[Stale] = []

    def remeasured_text(self) -> str:
        """The plan header's account of re-measurements, e.g. ``3 re-measured: measured under load …``."""
        return summary(self.remeasured)

    def get(
        self,
        spec: object,
        model: Callable[[], nn.Module],
        shape: tuple[int, int, int],
        batch: int,
        device: str = "cpu",
        *,
        train: bool = False,
        gradient: bool = True,
    ) -> PassTime:
        """The cached measurement of ``spec`` at ``batch``, or a new one of ``model()`` (then cached).

        ``gradient=False``: without the input-gradient pass (:func:`measure`), cached under its own key.
        """
        key = timing_key(spec, shape, batch, device, train, gradient)
        return self.remember(
            self._memory,
            key,
            PassTime,
            lambda: measure(model(), shape, batch, device, train=train, gradient=gradient),
        )

    def remember(
        self, memory: dict[str, _T], key: str, kind: Callable[..., _T], measure: Callable[[], _T]
    ) -> _T:
        """The measurement stored under ``key``: from ``memory``, else its JSON file, else ``measure()``.

        The file is read back as ``kind(**fields)``; a torn, foreign or refused one (``kind`` raises) is
        measured again, and so is one whose recorded conditions no longer hold (:func:`stale`: recorded in
        :attr:`remeasured`). A new measurement is counted in :attr:`measured` and written atomically with
        the conditions it ran under. Pass times, manipulation step times and explainer call times all go
        through here, each with its own ``memory``.
        """
        if key in memory:
            return memory[key]
        path = None if self.root is None else self.root / f"{key}.json"
        now = Conditions.now()
        if path is not None and path.is_file():
            try:
                fields = json.loads(path.read_text())
                if not isinstance(fields, dict):
                    raise RobustXAIError(f"not a JSON object: {type(fields).__name__}")
                then = fields.pop(FIELD, None)
                found = kind(**fields)
                why = stale(None if then is None else Conditions.read(then), now)
                if why is None:
                    memory[key] = found
                    return found
                self.remeasured.append(why)
            except (ValueError, TypeError, OverflowError):  # a torn or foreign file: measure again
                log.warning("ignoring unreadable timing cache %s", path)
        found = measure()
        self.measured += 1
        memory[key] = found
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # a unique temporary file, then os.replace
            write_text(path, json.dumps({**asdict(found), FIELD: asdict(now)}))
        return found
