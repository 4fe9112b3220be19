"""A model as a traced graph of operations, classified for incremental (box-wise) evaluation.

Used by incremental occlusion (:mod:`robustxai.explain._incremental`). An operation is

* *pointwise* in space: every output pixel depends only on the same pixel of its inputs (batch norm in eval
  mode, elementwise activations, residual adds, the wrapper's normalisation, channel concatenation), so it
  can be evaluated on any box of its input;
* a *window* operation: ``Conv2d`` (zero padding), ``MaxPool2d``, ``AvgPool2d`` — an output pixel depends on
  a k×k neighbourhood, so a box of the output needs the box of its input grown by the kernel (the halo);
* anything else (global pooling, flatten, linear, attention, custom code): evaluated on whole tensors.

Tracing uses ``torch.fx``; a custom sub-module whose own forward cannot be traced becomes one opaque "other"
operation, so one attention head does not stop the convolutions before it from being incremental. A module
with forward hooks or pre-hooks is never evaluated on a box (the hooks see whole tensors, as in the model).

Thread safety: ``torch.fx`` tracing temporarily patches ``nn.Module.__call__`` for the whole process, so a
model running in another thread *while a model is being traced* may be traced by mistake. Tracing is therefore
done once per model and module tree (:func:`cached_trace`), and never while the engine evaluates a model in
another thread (:data:`GATE`); other code (Captum, training, ...) running in other threads during the first
occlusion call on a model is not protected.
"""

from __future__ import annotations

import operator
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeGuard

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.node import Argument

from robustxai.models._wrapper import ModelWrapper

POINTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm2d, nn.Identity, nn.Dropout, nn.Dropout2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU,
    nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.Hardtanh,
    nn.Hardswish, nn.Hardsigmoid, nn.LogSigmoid, nn.Softsign, nn.Tanhshrink,
)  # fmt: skip
POINTWISE_FUNCTIONS: set[Callable[..., object]] = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.iadd, operator.imul,
    torch.add, torch.sub, torch.mul, torch.div, torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.abs,
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu, F.mish, F.softplus, F.hardtanh,
    F.hardswish, F.hardsigmoid, F.sigmoid, F.tanh, torch.cat,
}  # fmt: skip
POINTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "tanh", "add", "add_", "sub", "mul", "mul_", "div", "clone", "contiguous",
    "expand",
}  # fmt: skip
SATURATING_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.MaxPool2d)
SATURATING_FUNCTIONS: set[Callable[..., object]] = {
    torch.relu,
    F.relu,
    F.relu6,
    F.hardtanh,
    F.hardswish,
    F.hardsigmoid,
    torch.clamp,
}
INPLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}


class UnsupportedError(Exception):
    """The incremental engine does not handle this model; the caller uses Captum's full passes."""


def has_hooks(module: nn.Module) -> bool:
    """Whether ``module`` has forward hooks or forward pre-hooks of its own."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


def global_hooks() -> bool:
    """Whether forward hooks or pre-hooks are registered for every module (``register_module_forward_*``)."""
    from torch.nn.modules import module as torch_module

    return bool(torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks)


@dataclass(frozen=True)
class WindowOp:
    """A sliding-window operation.

    Per axis its extent ``d·(k − 1) + 1``, stride and padding; the padding value; and the operation itself
    without padding, applied to an input already padded with that value.
    """

    extent: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    fill: float
    fn: Callable[[torch.Tensor], torch.Tensor]


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def window_op(module: nn.Module) -> WindowOp | None:
    """The :class:`WindowOp` of a supported module, else ``None``.

    Subclasses with their own ``forward`` and modules with hooks are not supported (the operation built here
    would skip them).
    """
    own = next((t for t in (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d) if isinstance(module, t)), None)
    if own is None or type(module).forward is not own.forward or has_hooks(module):
        return None
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
        if isinstance(module.padding, str) and module.padding != "valid":
            return None
        pad = (0, 0) if isinstance(module.padding, str) else _pair(module.padding)
        k, d = _pair(module.kernel_size), _pair(module.dilation)
        conv = module

        def convolve(x: torch.Tensor) -> torch.Tensor:
            return F.conv2d(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)

        extent = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        return WindowOp(extent, _pair(module.stride), pad, 0.0, convolve)
    if isinstance(module, nn.MaxPool2d) and not module.ceil_mode and not module.return_indices:
        k, d = _pair(module.kernel_size), _pair(module.dilation)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        extent = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        pool = lambda x: F.max_pool2d(x, k, s, 0, d)  # noqa: E731
        return WindowOp(extent, s, _pair(module.padding), float("-inf"), pool)
    if isinstance(module, nn.AvgPool2d) and not module.ceil_mode:
        k, pad = _pair(module.kernel_size), _pair(module.padding)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        if pad != (0, 0) and not module.count_include_pad:
            return None
        div = module.divisor_override
        return WindowOp(k, s, pad, 0.0, lambda x: F.avg_pool2d(x, k, s, 0, False, True, div))
    return None


def node_args(node: fx.Node) -> list[fx.Node]:
    """The nodes among ``node``'s arguments."""
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), found.append)
    return found


def is_map(value: object, like: torch.Tensor) -> TypeGuard[torch.Tensor]:
    """Whether ``value`` is a ``[B, C, H, W]`` feature map with ``like``'s batch."""
    return isinstance(value, torch.Tensor) and value.ndim == 4 and value.shape[0] == like.shape[0]


def spatially_constant(value: object) -> bool:
    """A constant operand that broadcasts over rows and pixels (a scalar, a per-channel vector)."""
    if isinstance(value, list | tuple):
        return all(spatially_constant(v) for v in value)
    if not isinstance(value, torch.Tensor) or value.ndim == 0:
        return True
    s = value.shape
    return value.ndim <= 4 and s[-1] == 1 and (value.ndim < 2 or s[-2] == 1) and (value.ndim < 4 or s[0] == 1)


def is_pointwise(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` acts on each pixel separately (checked further against shapes by the caller)."""
    if node.op == "call_module":
        m = modules[str(node.target)]
        if has_hooks(m):
            return False
        if isinstance(m, nn.BatchNorm2d):
            return m.track_running_stats and m.running_mean is not None
        return isinstance(m, POINTWISE_MODULES)
    if node.op == "call_function":
        if node.target is torch.cat:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            return dim in (1, -3)
        return node.target in POINTWISE_FUNCTIONS
    if node.op == "call_method":
        if node.target == "expand":  # the wrapper's grey → RGB repeat: x.expand(-1, C, -1, -1)
            args = node.args
            return len(args) == 5 and args[1:2] == (-1,) and args[3:] == (-1, -1)
        return node.target in POINTWISE_METHODS
    return False


def can_saturate(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` can map a changed input to an unchanged output (a ReLU's negatives, a max)."""
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], SATURATING_MODULES)
    if node.op == "call_function":
        return node.target in SATURATING_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "relu_", "clamp", "clamp_")


def is_inplace(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` may overwrite one of its inputs (its inputs are then copied first)."""
    if node.op == "call_module":
        return bool(getattr(modules[str(node.target)], "inplace", False))
    if node.op == "call_method":
        return str(node.target).endswith("_")
    return node.target in INPLACE_FUNCTIONS or bool(node.kwargs.get("inplace", False))


def needs_contiguous(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` may ``view`` its inputs, so channels-last activations must be made contiguous first.

    ``Tensor.view`` itself, and custom modules (whose code is not traced); PyTorch's own modules and
    functions take any memory layout.
    """
    if node.op == "call_module":
        return not type(modules[str(node.target)]).__module__.startswith("torch.")
    return node.op == "call_method" and node.target == "view"


def call(
    node: fx.Node,
    args: tuple[Argument, ...],
    kwargs: Mapping[str, Argument],
    root: nn.Module,
    modules: dict[str, nn.Module],
) -> Argument:
    """Evaluate one node on concrete arguments (the values of its argument nodes)."""
    if node.op == "call_module":
        return modules[str(node.target)](*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)  # type: ignore[operator]
    if node.op == "call_method":
        return getattr(args[0], str(node.target))(*args[1:], **kwargs)
    if node.op == "get_attr":
        if "constant" in node.meta:  # a tensor made inside forward (see trace)
            return node.meta["constant"]
        owner: object = root
        *path, name = str(node.target).split(".")
        for part in path:
            owner = getattr(owner, part)
        return getattr(owner, name)
    raise ValueError(f"cannot evaluate a {node.op} node")


class Normalised(nn.Module):
    """A :class:`ModelWrapper`'s forward without its input check (which fx cannot trace), in one dtype."""

    def __init__(self, wrapper: ModelWrapper, dtype: torch.dtype) -> None:
        super().__init__()
        self.net = wrapper.net
        self.repeat = wrapper.net_channels if wrapper.net_channels != wrapper.in_channels else 0
        self.register_buffer("mean", wrapper.get_buffer("mean").to(dtype))
        self.register_buffer("std", wrapper.get_buffer("std").to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Repeat grey to the network's channels if needed, normalise, run the network."""
        if self.repeat:
            x = x.expand(-1, self.repeat, -1, -1)
        return self.net((x - self.get_buffer("mean")) / self.get_buffer("std"))


class _Tracer(fx.Tracer):
    def __init__(self, opaque: set[int]) -> None:
        super().__init__()
        self.opaque = opaque

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return id(m) in self.opaque or super().is_leaf_module(m, module_qualified_name)


def traceable(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The module to trace: a plain :class:`ModelWrapper` is replaced by :class:`Normalised`."""
    if isinstance(model, ModelWrapper) and type(model).forward is ModelWrapper.forward:
        return Normalised(model, dtype)
    return model


def trace(root: nn.Module) -> fx.Graph:
    """Trace ``root``; custom sub-modules that cannot be traced on their own become opaque calls.

    Tracing runs the Python forward on proxies, so a module that stores something during its forward
    (e.g. the last attention map) would keep a proxy: attributes that tracing changed are restored afterwards.
    Not thread-safe (see the module docstring); :func:`cached_trace` is the entry point.
    """
    saved = [(m, dict(m.__dict__)) for m in root.modules()]
    try:
        try:
            graph = _Tracer(set()).trace(root)
        except Exception:  # noqa: BLE001 - any tracing failure: find the untraceable sub-modules
            opaque: set[int] = set()
            probe = _Tracer(opaque)
            for name, m in reversed(list(root.named_modules())):
                if name and not probe.is_leaf_module(m, name):
                    try:
                        _Tracer(opaque).trace(m)
                    except Exception:  # noqa: BLE001
                        opaque.add(id(m))
            graph = _Tracer(opaque).trace(root)
        for node in graph.nodes:  # tensors made in forward were set on the root, which is restored below
            name = str(node.target)
            if node.op == "get_attr" and name.startswith("_tensor_constant") and name not in saved[0][1]:
                node.meta["constant"] = getattr(root, name)
        return graph
    finally:
        for m, attrs in saved:
            for key in [k for k in m.__dict__ if k not in attrs]:
                del m.__dict__[key]
            for key, value in attrs.items():
                if m.__dict__.get(key, attrs) is not value:
                    m.__dict__[key] = value


class _Gate:
    """Many engine runs, or one trace, at a time (tracing patches ``nn.Module.__call__`` for every thread)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._runs = 0
        self._tracing = False

    @contextmanager
    def run(self) -> Iterator[None]:
        """Held while the engine evaluates a model."""
        with self._cond:
            self._cond.wait_for(lambda: not self._tracing)
            self._runs += 1
        try:
            yield
        finally:
            with self._cond:
                self._runs -= 1
                self._cond.notify_all()

    @contextmanager
    def trace(self) -> Iterator[None]:
        """Held while tracing: waits for the engine runs of other threads to end."""
        with self._cond:
            self._cond.wait_for(lambda: not self._tracing and self._runs == 0)
            self._tracing = True
        try:
            yield
        finally:
            with self._cond:
                self._tracing = False
                self._cond.notify_all()


GATE = _Gate()
_CACHE_LOCK = threading.Lock()
_Key = tuple[torch.dtype, tuple[tuple[str, int, type[nn.Module]], ...]]  # dtype; (name, id, type) per module
# per model: (dtype, module tree) it was traced for, and its graph or the reason it is not supported
_GRAPHS: weakref.WeakKeyDictionary[nn.Module, tuple[_Key, fx.Graph | str]] = weakref.WeakKeyDictionary()


def _key(model: nn.Module, dtype: torch.dtype) -> _Key:
    return (dtype, tuple((name, id(m), type(m)) for name, m in model.named_modules()))


def cached_trace(model: nn.Module, dtype: torch.dtype) -> tuple[nn.Module, fx.Graph]:
    """The root to evaluate (:func:`traceable`) and its graph, traced once per model, dtype and module tree.

    Must not be called while holding ``GATE.run()`` (tracing waits for every engine run to end).

    Raises:
        UnsupportedError: The model cannot be traced, or was declined before (:func:`decline`).
    """
    root, key = traceable(model, dtype), _key(model, dtype)
    with _CACHE_LOCK:
        entry = _GRAPHS.get(model)
    if entry is None or entry[0] != key:
        with GATE.trace():
            with _CACHE_LOCK:
                entry = _GRAPHS.get(model)
            if entry is None or entry[0] != key:
                try:
                    entry = (key, trace(root))
                except Exception as exc:  # noqa: BLE001 - whatever fx raises: the model is not traceable
                    entry = (key, f"torch.fx cannot trace the model ({type(exc).__name__}: {exc})")
                with _CACHE_LOCK:
                    _GRAPHS[model] = entry
    if isinstance(entry[1], str):
        raise UnsupportedError(entry[1])
    return root, entry[1]


def decline(model: nn.Module, dtype: torch.dtype, reason: str) -> UnsupportedError:
    """Remember that ``model`` (in this dtype and module tree) is not supported; the exception to raise."""
    with _CACHE_LOCK:
        _GRAPHS[model] = (_key(model, dtype), reason)
    return UnsupportedError(reason)


_DECLINED: weakref.WeakKeyDictionary[nn.Module, set[str]] = weakref.WeakKeyDictionary()


def first_decline(model: nn.Module, reason: str) -> bool:
    """Whether ``model`` is declined for ``reason`` for the first time (the caller logs it then)."""
    with _CACHE_LOCK:
        seen = _DECLINED.setdefault(model, set())
        first = reason not in seen
        seen.add(reason)
    return first
