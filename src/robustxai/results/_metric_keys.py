"""Registered metrics as stored keys: which ``metrics`` rows a metric writes, and which metric a row is.

The metric registry (:mod:`robustxai.metrics._registry`) says what a metric is; the store's schema
(:class:`~robustxai.results._schema.MetricKey`) says how a name is spelled. This module joins the two, so the
audit (writing) and the report (reading) derive every stored map-metric name from the registry instead of
spelling it:

- a metric compared between a clean and an attacked map (``needs == "maps_pair"``) is stored as
  :data:`~robustxai.results._schema.MAP_PREFIX` + name (``map_ssim``);
- a metric evaluated at top-k fractions as ``name@k`` (``point_coverage@15``), one key per fraction;
- any other as its name (``pointing_game``).
"""

from __future__ import annotations

from collections.abc import Sequence

from robustxai._errors import UnknownNameError
from robustxai.metrics import MetricInfo, get_metric, headline_metric, map_metrics
from robustxai.metrics._registry import REFERENCE_TOP, ReportTable
from robustxai.results._schema import MAP_PREFIX, MetricKey

__all__ = [
    "alignment_scores",
    "headline_key",
    "is_stability_key",
    "metric_of",
    "reference_key",
    "stored_keys",
    "table_metrics",
]


def stored_keys(info: MetricInfo, tops: Sequence[float]) -> list[tuple[MetricKey, float | None]]:
    """The keys ``info`` is stored under, each with its top-k fraction (``None`` without one).

    Args:
        info: A per-sample map metric.
        tops: The audit's configured ``explain.tops`` (used by metrics evaluated at :data:`CONFIG_TOPS`).
    """
    if info.needs == "maps_pair":
        return [(MetricKey(MAP_PREFIX + info.name), None)]
    fractions = info.tops_for(tops)
    if fractions:
        return [(MetricKey.at_top(info.name, t), t) for t in fractions]
    return [(MetricKey(info.name), None)]


def reference_key(info: MetricInfo, top: float = REFERENCE_TOP) -> str:
    """The stored name of ``info`` at ``top`` when it is evaluated at top-k fractions (else its only key)."""
    if info.needs == "maps_pair":
        return MAP_PREFIX + info.name
    return str(MetricKey.at_top(info.name, top)) if info.tops else info.name


def headline_key() -> str:
    """The stored name of the headline alignment figure: the headline metric at :data:`REFERENCE_TOP`."""
    return reference_key(headline_metric())


def metric_of(key: object) -> MetricInfo | None:
    """The registered metric a stored map-metric name belongs to (``None`` for an unregistered one)."""
    parsed = MetricKey.parse(key)
    try:
        info = get_metric(parsed.base)
    except UnknownNameError:
        return None
    pair = info.needs == "maps_pair"
    return info if info.on_maps and pair == parsed.name.startswith(MAP_PREFIX) else None


def is_stability_key(key: object) -> bool:
    """Whether a stored name compares a clean map with an attacked one (a ``maps_pair`` metric)."""
    info = metric_of(key)
    return info is not None and info.needs == "maps_pair"


def table_metrics(table: ReportTable) -> list[MetricInfo]:
    """The map metrics the report shows in ``table``, in registration order."""
    return [info for info in map_metrics() if info.table == table]


def alignment_scores() -> list[str]:
    """Stored names of the ground-truth alignment scores at :data:`REFERENCE_TOP`, in registration order.

    These are the higher-is-better metrics that compare a map with the expert's truth: what the correlation
    with robustness and the comparison with human ratings use.
    """
    return [reference_key(i) for i in map_metrics() if i.on_truth and i.higher_is_better is True]
