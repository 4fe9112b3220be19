"""Seconds per image of an explainer call, measured with one real call, cached beside the pass times.

Why measured and not counted: occlusion's pass count (:meth:`robustxai.explain.Occlusion.passes`) is one
full forward pass per window and image, but its incremental engine (:mod:`robustxai.explain._incremental`)
re-evaluates each layer only on the box a window can reach, so a window costs a fraction of a pass. Priced
by its windows, the paper profile's explanation stage was over-predicted about 9× on occlusion (plan 1:20:03
for the stage, ≈ 17 min measured). So the plan times the configured explainer itself: a warm-up call on one
image (the model's trace is built and cached then), then the fastest of :data:`REPEATS` calls on
:data:`TIMED_IMAGES` of the first test images; a call on ``n`` images is predicted as ``n ×`` the seconds
per image. Where the engine does not apply (a model it cannot box, e.g. attention: the call's
:attr:`~robustxai.explain._base.Explanation.engine` is ``"captum"``) the plan keeps the window count's price.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai.audit._timing import TimingCache, timing_key
from robustxai.explain import Explainer

CALL_VERSION = "explain-call-2"  # bump when what a call measurement means changes (2: fast pool)
#: Explainers priced by a measured call instead of their pass count.
TIMED_EXPLAINERS = ("occlusion",)
TIMED_IMAGES = 2  # images of a timed call
REPEATS = 2  # timed calls


@dataclass(frozen=True)
class CallTime:
    """Seconds per image of an explainer call, and the engine that ran it.

    Attributes:
        images: Images of the timed call.
        per_image: Seconds per image.
        engine: The call's :attr:`~robustxai.explain._base.Explanation.engine` (``None``: a single one).
    """

    images: int
    per_image: float
    engine: str | None

    def __post_init__(self) -> None:
        """A cached file with images < 1, a time that is not finite and ≥ 0, or an odd engine is refused."""
        if isinstance(self.images, bool) or not isinstance(self.images, int) or self.images < 1:
            raise RobustXAIError(f"a call timing's images must be an integer ≥ 1, got {self.images!r}")
        t = self.per_image
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t < math.inf:
            raise RobustXAIError(f"an explainer call timing's seconds must be finite and ≥ 0, got {t!r}")
        if self.engine is not None and not isinstance(self.engine, str):
            raise RobustXAIError(f"an explainer call timing's engine must be a name, got {self.engine!r}")

    @property
    def applies(self) -> bool:
        """Whether the measurement prices the calls: not when occlusion fell back to Captum's full passes."""
        return self.engine != "captum"


def timed(explainer: Explainer) -> bool:
    """Whether the plan prices ``explainer`` by a measured call (:data:`TIMED_EXPLAINERS`)."""
    return explainer.name in TIMED_EXPLAINERS


def measure_call(model: nn.Module, explainer: Explainer, images: torch.Tensor) -> CallTime:
    """Time ``explainer`` on ``images`` (the predicted class): a warm-up on one image, the fastest call."""
    model = model.eval()
    explainer.explain(model, images[:1])  # warm-up: the trace, the allocator

    def call() -> tuple[float, str | None]:
        t = time.perf_counter()
        found = explainer.explain(model, images)
        return time.perf_counter() - t, found.engine

    best, engine = math.inf, None
    for _ in range(REPEATS):  # the fastest: one noisy call must not set the price of every image
        took, engine = call()
        best = min(best, took)
    n = int(images.shape[0])
    return CallTime(n, best / n, engine)


class CallCache:
    """Call measurements cached as JSON next to the pass times (:class:`TimingCache`'s folder and counter)."""

    def __init__(self, timing: TimingCache) -> None:
        self.timing = timing
        self._memory: dict[str, CallTime] = {}

    def get(
        self, spec: Any, model: nn.Module, explainer: Explainer, images: torch.Tensor, device: str = "cpu"
    ) -> CallTime:
        """The cached call time of ``explainer`` on ``spec`` at this image shape, or a new (cached) one."""
        shape = tuple(int(v) for v in images.shape[1:])
        what = [CALL_VERSION, spec, explainer.name, explainer.params()]
        key = timing_key(what, shape, int(images.shape[0]), device, False)  # type: ignore[arg-type]

        def measured() -> CallTime:
            home = next((p.device for p in model.parameters()), torch.device("cpu"))
            found = measure_call(model.to(device), explainer, images.to(device))
            model.to(home)
            return found

        return self.timing.remember(self._memory, key, CallTime, measured)
