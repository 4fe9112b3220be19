"""Seconds per step of the manipulation attack, measured with a few real steps, cached beside the pass times.

Why measured and not counted: a step of the attack is a double backward through a Softplus stand-in of the
model (Softplus and its second derivative cost more than a ReLU's), SSIM terms, the shrink back to the
image-SSIM floor (a bisection of up to 12 SSIM evaluations) and the real map's score. Its pass counts
(:meth:`robustxai.manipulate.Manipulate.passes`) priced at plain gradient passes under-predicted the default
audit's manipulation stage about 2.5× (48 s planned, 123 s measured). So the plan times the configured
attack itself on the first test images: calls of 1 step and of 3 steps (after a warm-up call; the fastest of
two each) give the seconds per step and the seconds a call costs besides its steps (clean logits, targets,
the final score). A call of ``n`` steps is then predicted as ``n × step + call``. The timed calls run
every step at its steady-state cost (:func:`with_steps`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustxai._errors import RobustXAIError
from robustxai.audit._timing import TimingCache, timing_key
from robustxai.manipulate import Manipulate

STEP_VERSION = "manip-step-3"  # bump when what a step measurement means changes (3: SSIM box mean, fast pool)
SHORT, LONG = 1, 3  # steps of the two timed calls
REPEATS = 2  # timed calls of each length


@dataclass(frozen=True)
class StepTime:
    """Seconds of the manipulation attack on ``batch`` images.

    Attributes:
        batch: Images per call.
        step: Seconds of one step (main descent or refinement: both run the same work).
        call: Seconds of a call besides its steps.
    """

    batch: int
    step: float
    call: float

    def __post_init__(self) -> None:
        """A cached file with a batch < 1 or a time that is not a finite non-negative number is refused."""
        times = (self.step, self.call)
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise RobustXAIError(f"a step timing's batch must be an integer ≥ 1, got {self.batch!r}")
        finite = (isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t < math.inf for t in times)
        if not all(finite):
            raise RobustXAIError(f"a step timing's seconds must be finite and ≥ 0, got {times!r}")

    def seconds(self, steps: int, rows: int) -> float:
        """Predicted seconds of a call of ``steps`` steps on ``rows`` images; scaled per image."""
        return (steps * self.step + self.call) * rows / self.batch


def with_steps(attack: Manipulate, steps: int) -> Manipulate:
    """The attack as one timed call runs it: ``steps`` main steps, no refinement, at its steady-state cost.

    With an image-SSIM floor, the floor is raised to 1 so that the shrink (a 12-step bisection of SSIM
    evaluations) runs after every step: in a real call the perturbation reaches the floor after a few
    steps and the shrink then runs on every later one, but a timed call of 1–3 steps would never reach it.
    """
    selection = dataclasses.replace(attack.selection, refine_iterations=0)
    budget = attack.budget
    if budget.ssim_floor is not None:
        budget = dataclasses.replace(budget, ssim_floor=1.0)
    return dataclasses.replace(attack, iterations=steps, selection=selection, budget=budget)


def total_steps(attack: Manipulate) -> int:
    """Steps of one call: the main descent and, when it selects by the real map, the refinement."""
    refine = int(attack.selection.refine_iterations) if attack.selection.real else 0
    return int(attack.iterations) + refine


def measure_steps(
    model: nn.Module, attack: Manipulate, images: torch.Tensor, labels: torch.Tensor
) -> StepTime:
    """Time the attack on ``images``: a warm-up call, then calls of :data:`SHORT` and :data:`LONG` steps."""
    short, long = with_steps(attack, SHORT), with_steps(attack, LONG)
    model = model.eval()
    short(model, images, labels)  # warm-up: allocator, the surrogate's first build

    def timed(a: Manipulate) -> float:
        t = time.perf_counter()
        a(model, images, labels)
        return time.perf_counter() - t

    # the fastest of REPEATS calls each, alternating: one noisy call must not set the price of every step
    t_short, t_long = math.inf, math.inf
    for _ in range(REPEATS):
        t_short, t_long = min(t_short, timed(short)), min(t_long, timed(long))
    step = max((t_long - t_short) / (LONG - SHORT), t_long / (LONG + 1) / 2)  # noise never gives ≤ 0
    return StepTime(int(images.shape[0]), step, max(t_short - SHORT * step, 0.0))


class StepCache:
    """Step measurements cached as JSON next to the pass times (:class:`TimingCache`'s folder and counter)."""

    def __init__(self, timing: TimingCache) -> None:
        self.timing = timing
        self._memory: dict[str, StepTime] = {}

    def get(
        self,
        spec: Any,
        model: nn.Module,
        attack: Manipulate,
        images: torch.Tensor,
        labels: torch.Tensor,
        device: str = "cpu",
    ) -> StepTime:
        """The cached step time of ``attack`` on ``spec`` at this batch, or a new (then cached) one."""
        shape = tuple(int(v) for v in images.shape[1:])
        what = [STEP_VERSION, spec, repr(with_steps(attack, SHORT))]
        key = timing_key(what, shape, int(images.shape[0]), device, False)  # type: ignore[arg-type]

        def measured() -> StepTime:
            home = next((p.device for p in model.parameters()), torch.device("cpu"))
            found = measure_steps(model.to(device), attack, images.to(device), labels.to(device))
            model.to(home)
            return found

        return self.timing.remember(self._memory, key, StepTime, measured)
