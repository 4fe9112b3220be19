"""Reading the manipulation stage's rows and judging a share or a mean against a threshold by its interval.

The stage stores, per model, attacked method ``m`` (condition ``manipulate:m``) and image: for each map
method scored on the attacked image (``explainer``) ``target_ssim``, ``unsuccessful`` (0/1: SSIM(target,
map) < 0.6, the paper's failure), ``peak_in_target`` (0/1), ``map_ssim`` (original vs attacked map); and,
with explainer ``""``, ``image_ssim`` and ``prediction_unchanged`` (0/1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from robustxai.claims._data import metric_rows
from robustxai.claims._stats import LEVEL, clopper_pearson, paired_difference
from robustxai.results._run import RunData
from robustxai.results._schema import MANIPULATION_ORIGINAL, NO_EXPLAINER, manipulation_method

__all__ = ["Criterion", "Judged", "attacked_methods", "decisive_n", "judge", "manip_values"]

Status = Literal["met", "failed", "undecided"]


def attacked_methods(run: RunData) -> list[tuple[str, str]]:
    """``(model, attacked method)`` pairs of the run's manipulation rows, sorted."""
    m = metric_rows(run, "unsuccessful")  # every attacked method has it (the paper's failure criterion)
    conds = m.loc[m["condition"] != MANIPULATION_ORIGINAL, ["model", "condition"]].drop_duplicates()
    out = {
        (str(model), method)
        for model, c in conds.itertuples(index=False)
        if (method := manipulation_method(c))
    }
    return sorted(out)


def manip_values(run: RunData, model: str, method: str, explainer: str, metric: str) -> np.ndarray:
    """Per-image values (sorted by sample id, NaN dropped) of one manipulation metric."""
    m = metric_rows(run, metric)
    rows = m[
        (m["model"] == model) & (m["condition"] == f"manipulate:{method}") & (m["explainer"] == explainer)
    ]
    rows = rows.sort_values("sample_id", kind="mergesort")
    values: np.ndarray = rows["value"].to_numpy(dtype=np.float64)
    finite: np.ndarray = values[np.isfinite(values)]
    return finite


def image_values(run: RunData, model: str, method: str, metric: str) -> np.ndarray:
    """Per-image values of a metric of the attacked image itself (explainer ``""``)."""
    return manip_values(run, model, method, NO_EXPLAINER, metric)


@dataclass(frozen=True)
class Criterion:
    """A threshold a share or mean must keep: ``value ≤ bound`` (``"max"``) or ``value ≥ bound`` (``"min"``).

    ``strict`` makes it ``<`` / ``>``. ``share`` marks a 0/1 per-image quantity (exact binomial interval);
    otherwise the interval is the percentile bootstrap of the mean.
    """

    name: str
    metric: str
    kind: Literal["max", "min"]
    bound: float
    share: bool
    strict: bool = False


@dataclass(frozen=True)
class Judged:
    """A criterion measured: its estimate, 95 % interval, ``n`` and status."""

    criterion: Criterion
    value: float
    ci: tuple[float, float]
    n: int
    status: Status

    def text(self) -> str:
        """``"unsuccessful ratio 0.0 % [0.0, 60.2] ≤ 10 %: undecided"``."""
        c = self.criterion
        op = {("max", False): "≤", ("max", True): "<", ("min", False): "≥", ("min", True): ">"}[
            (c.kind, c.strict)
        ]
        if c.share:
            nums = f"{self.value:.0%} [{self.ci[0]:.0%}, {self.ci[1]:.0%}]"
            bound = f"{c.bound:.0%}"
        else:
            nums = f"{self.value:.3f} [{self.ci[0]:.3f}, {self.ci[1]:.3f}]"
            bound = f"{c.bound:g}"
        return f"{c.name} {nums} {op} {bound}: {self.status}"


def decisive_n(c: Criterion) -> int | None:
    """Fewest images on which a perfect result (every image on the right side) meets a share criterion.

    With the exact two-sided 95 % interval, ``n`` of ``n`` proves a share above ``b`` only when
    ``(α/2)^(1/n) > b``; 0 of ``n`` proves one below ``b`` only when ``1 − (α/2)^(1/n) < b``. ``None`` for
    a mean (its interval narrows with the spread of the values, not only with ``n``).
    """
    if not c.share or not 0.0 < c.bound < 1.0:
        return None
    tail = (1.0 - LEVEL) / 2.0
    base = c.bound if c.kind == "min" else 1.0 - c.bound
    return math.floor(math.log(tail) / math.log(base)) + 1


def _inside(x: float, c: Criterion) -> bool:
    if c.kind == "max":
        return x < c.bound if c.strict else x <= c.bound
    return x > c.bound if c.strict else x >= c.bound


def judge(values: np.ndarray, c: Criterion) -> Judged:
    """Estimate and 95 % interval of ``values`` (a share or a mean), and whether ``c`` holds.

    Met when the whole interval keeps the threshold, failed when the whole interval breaks it, else
    undecided (a point estimate on a few images proves neither).
    """
    n = int(values.size)
    if n == 0:
        return Judged(c, math.nan, (math.nan, math.nan), 0, "undecided")
    if c.share:
        k = int(np.round(values).sum())
        value, ci = k / n, clopper_pearson(k, n)
    else:
        d = paired_difference(values, np.zeros_like(values))
        value, ci = d.mean, (d.ci_low, d.ci_high)
    if any(math.isnan(x) for x in ci):
        return Judged(c, value, ci, n, "undecided")
    status: Status = "undecided"
    if _inside(ci[0], c) and _inside(ci[1], c):
        status = "met"
    elif not _inside(ci[0], c) and not _inside(ci[1], c):
        status = "failed"
    return Judged(c, value, ci, n, status)
