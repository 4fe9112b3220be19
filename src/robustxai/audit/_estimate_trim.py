"""``--max-minutes``: trim the explained and manipulated images until the predicted audit fits.

Both counts shrink by the same fraction (at least one image each), found by bisection on the predicted
total. The attacked images are the whole test set and are not trimmed: the test set is part of the data's
and the trained models' cache keys, so trimming it would retrain every model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from robustxai._errors import ConfigError
from robustxai.audit._config import AuditConfig
from robustxai.audit._progress import format_seconds

BISECTIONS = 24


def manipulates(cfg: AuditConfig) -> bool:
    """Whether the audit has a manipulation stage that attacks at least one model."""
    mc = cfg.manipulation
    return mc is not None and any(mc.attacks(m.name) for m in cfg.models)


def scaled(cfg: AuditConfig, fraction: float) -> AuditConfig:
    """``cfg`` with the explained and manipulated images scaled by ``fraction`` (at least one each)."""
    out = cfg.model_copy(deep=True)
    out.explain.n_images = max(1, math.floor(cfg.explain.n_images * fraction))
    if out.manipulation is not None and cfg.manipulation is not None and manipulates(cfg):
        out.manipulation.n_images = max(1, math.floor(cfg.manipulation.n_images * fraction))
    return out


def trimmed_lines(before: AuditConfig, after: AuditConfig) -> list[str]:
    """``key old → new`` for every image count the trimming changed."""
    out = []
    if before.explain.n_images != after.explain.n_images:
        out.append(f"explain.n_images {before.explain.n_images} → {after.explain.n_images}")
    if before.manipulation is not None and after.manipulation is not None:
        a, b = before.manipulation.n_images, after.manipulation.n_images
        if a != b:
            out.append(f"manipulation.n_images {a} → {b}")
    return out


def trim_to_fit(
    cfg: AuditConfig, budget_s: float, total: Callable[[AuditConfig], float]
) -> tuple[AuditConfig, list[str]]:
    """The config with the most images whose predicted total fits ``budget_s``, and what was trimmed.

    Args:
        cfg: The configuration.
        budget_s: Seconds available.
        total: Predicted seconds of a configuration.

    Raises:
        ConfigError: When even the smallest counts (one image each) do not fit.
    """
    if total(cfg) <= budget_s:
        return cfg, []
    smallest = scaled(cfg, 0.0)
    least = total(smallest)
    if least > budget_s:
        raise ConfigError(
            f"even one explained {'and one manipulated ' if manipulates(cfg) else ''}image is predicted to "
            f"take {format_seconds(least)}, "
            f"more than --max-minutes {budget_s / 60:g} (training and the attacks on the whole test set are "
            "not trimmed); allow more minutes, or audit fewer models, attacks or test images"
        )
    lo, hi = 0.0, 1.0
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        if total(scaled(cfg, mid)) <= budget_s:
            lo = mid
        else:
            hi = mid
    best = scaled(cfg, lo)
    return best, trimmed_lines(cfg, best)
