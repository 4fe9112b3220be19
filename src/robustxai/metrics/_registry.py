"""Metric registry: every metric by name, with what it needs, its parameters, direction and presentation.

The registry is what drives the work: the audit computes every per-sample map metric it lists (on each
condition's maps, or on a clean and an attacked map for a ``maps_pair`` metric), and the report and the
run tables read it for labels, directions, the table that shows a metric and why a value can be undefined.
Adding a metric is one file with its function plus one :func:`register_metric` call; the contract tests, the
audit, the CSVs and the report pick it up from here.

Entries are stored in the shared :class:`~robustxai._registry.Registry` as zero-argument factories returning
a :class:`MetricInfo`, so unknown names fail with the list of known ones. The built-in entries are
registered in :mod:`robustxai.metrics._builtin`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from robustxai._errors import RobustXAIError
from robustxai._registry import Registry

Needs = Literal["map", "points", "mask", "truth", "labels", "maps_pair", "values_pair"]
Per = Literal["sample", "label", "set"]
#: The report table a map metric is shown in (``None``: stored and written to the CSVs only).
ReportTable = Literal["alignment", "localisation", "impact", "stability"]
#: ``"config"``: evaluated at every top-k fraction of the audit's ``explain.tops``.
CONFIG_TOPS: Literal["config"] = "config"
Tops = tuple[float, ...] | Literal["config"]

#: What a per-sample metric on maps may need (the others are computed from predictions or across models).
MAP_NEEDS: tuple[Needs, ...] = ("map", "points", "mask", "truth", "maps_pair")
#: Needs that compare a map with the expert's ground truth.
TRUTH_NEEDS: tuple[Needs, ...] = ("points", "mask", "truth")
#: The top-k fraction the papers compare at: the fixed top of IoU and RMSE, and the headline's top.
REFERENCE_TOP = 0.15


@dataclass(frozen=True)
class MetricInfo:
    """Description of one registered metric.

    Attributes:
        name: Registry name; the stored metric key derives from it (see ``robustxai.results._metric_keys``).
        fn: The metric function; what it returns depends on ``per``. A per-sample map metric is called as
            :func:`evaluate` says: ``fn(maps, <what it needs>, top=…, **settings)``.
        higher_is_better: Direction of improvement, for ranking and report arrows; ``None`` for a
            descriptive value with no better direction (the true size of a top-k region).
        needs: What the metric takes besides the maps: nothing (``map``), expert ``points``, a
            ground-truth ``mask``, either or both (``truth``), class ``labels`` (with logits or scores), the
            clean map to compare an attacked one with (``maps_pair``), or two paired value vectors
            (``values_pair``, e.g. one value per model).
        description: One line for listings.
        per: What one value describes: a ``sample`` (``fn`` returns a tensor ``[B]``), a ``label``
            (a tensor ``[K]`` computed over a set of samples, e.g. AUC), or the whole ``set`` (a tuple
            of statistics, e.g. Spearman's ``(rho, p_value, n)``).
        label: Display name in the report (default: ``name``).
        undefined: Why a value can be undefined (NaN), for the report's note; ``""`` if it never is.
        tops: The top-k fractions the metric is evaluated at (passed as ``top=``): a tuple, or
            :data:`CONFIG_TOPS` for every fraction of the audit's ``explain.tops``; ``()`` for none.
        settings: ``(keyword, explain-config field)`` pairs: keywords of ``fn`` that the audit fills
            from its ``explain`` configuration (the pointing game's ``radius`` from ``pointing_radius``).
        table: The report table that shows the metric (``None``: in the CSVs only).
        scale: Factor for display (100: shown in %).
        digits: Decimals shown.
        guide: The report's one-sentence reading of the metric (default: ``description``).
        headline: Whether this is the headline alignment metric (Table 2, the summary, random-map gaps).
    """

    name: str
    fn: Callable[..., object]
    higher_is_better: bool | None
    needs: Needs
    description: str
    per: Per = "sample"
    label: str = ""
    undefined: str = ""
    tops: Tops = ()
    settings: tuple[tuple[str, str], ...] = ()
    table: ReportTable | None = None
    scale: float = 1.0
    digits: int = 2
    guide: str = ""
    headline: bool = False

    @property
    def display(self) -> str:
        """The label shown in the report."""
        return self.label or self.name

    @property
    def reading(self) -> str:
        """The report's reading guide sentence."""
        return self.guide or self.description

    @property
    def on_maps(self) -> bool:
        """Whether the audit computes this metric per image on explanation maps."""
        return self.per == "sample" and self.needs in MAP_NEEDS

    @property
    def on_truth(self) -> bool:
        """Whether this metric compares a map with the expert's ground truth (points and/or a mask)."""
        return self.per == "sample" and self.needs in TRUTH_NEEDS

    def tops_for(self, configured: Sequence[float]) -> tuple[float, ...]:
        """The top-k fractions to evaluate at, given the audit's configured ``explain.tops``."""
        return tuple(configured) if isinstance(self.tops, str) else self.tops


METRICS: Registry[MetricInfo] = Registry("metric")
#: Names in registration order: the order the audit computes the metrics and the report shows them.
_ORDER: list[str] = []


def register_metric(info: MetricInfo) -> MetricInfo:
    """Register ``info`` under its name; the audit, the run tables and the report then use it.

    Raises:
        RobustXAIError: If the name is taken, ``needs``, ``per`` or ``table`` is not a known value, or a
            top-k fraction is outside (0, 1].
    """
    if info.name in METRICS:
        raise RobustXAIError(f"metric {info.name!r} is registered twice")
    for field_name, value, allowed in (
        ("needs", info.needs, get_args(Needs)),
        ("per", info.per, get_args(Per)),
        ("table", info.table, (None, *get_args(ReportTable))),
    ):
        if value not in allowed:
            raise RobustXAIError(
                f"metric {info.name!r}: {field_name} must be one of {allowed}, not {value!r}"
            )
    if isinstance(info.tops, str) and info.tops != CONFIG_TOPS:
        raise RobustXAIError(f"metric {info.name!r}: tops must be {CONFIG_TOPS!r} or fractions: {info.tops}")
    if not isinstance(info.tops, str) and any(not 0 < t <= 1 for t in info.tops):
        raise RobustXAIError(f"metric {info.name!r}: tops must be fractions in (0, 1], got {info.tops}")

    def factory() -> MetricInfo:
        return info

    METRICS.register(info.name)(factory)
    _ORDER.append(info.name)
    return info


def unregister_metric(name: str) -> None:
    """Remove the metric ``name`` (for tests that register a throwaway metric).

    Raises:
        robustxai._errors.UnknownNameError: For an unknown name.
    """
    METRICS.unregister(name)
    _ORDER.remove(name)


def list_metrics() -> list[str]:
    """Names of all registered metrics, sorted."""
    return METRICS.names()


def get_metric(name: str) -> MetricInfo:
    """Return the :class:`MetricInfo` registered as ``name``.

    Raises:
        robustxai._errors.UnknownNameError: For an unknown name; the message lists the known metrics.
    """
    return METRICS.get(name)()


def iter_metrics() -> Iterator[MetricInfo]:
    """Every registered metric, in registration order (the order the audit computes and the report shows)."""
    for name in list(_ORDER):
        yield get_metric(name)


def map_metrics() -> list[MetricInfo]:
    """The per-sample metrics the audit computes on explanation maps, in registration order."""
    return [info for info in iter_metrics() if info.on_maps]


def headline_metric() -> MetricInfo:
    """The headline alignment metric (exactly one registered metric declares ``headline=True``).

    Raises:
        RobustXAIError: If none or several do.
    """
    found = [info for info in iter_metrics() if info.headline]
    if len(found) != 1:
        raise RobustXAIError(f"exactly one metric must be the headline, found {[i.name for i in found]}")
    return found[0]


@dataclass(frozen=True)
class MapInputs:
    """What a per-sample map metric may take: the maps and, as the metric needs, truth or the clean maps.

    Attributes:
        maps: The maps ``[B, H, W]`` being scored.
        masks: Ground-truth masks ``[B, H, W]`` (bool; all False where an image has none).
        points: Expert points per image, each ``[N, 2]`` as (x, y).
        reference: The maps ``maps`` are compared with (the clean maps of an attacked image).
    """

    maps: torch.Tensor
    masks: torch.Tensor | None = None
    points: Sequence[np.ndarray] | None = None
    reference: torch.Tensor | None = None


def evaluate(info: MetricInfo, inputs: MapInputs, **params: object) -> torch.Tensor:
    """One value per image of the per-sample map metric ``info`` (``params``: ``top`` and its settings).

    The call follows ``info.needs``: ``fn(maps)``, ``fn(maps, points)``, ``fn(maps, masks)``,
    ``fn(maps, masks=masks, points=points)`` or ``fn(reference, maps)``, each with ``**params``.

    Raises:
        RobustXAIError: If ``info`` is not a per-sample map metric or ``inputs`` lacks what it needs.
    """
    if not info.on_maps:
        raise RobustXAIError(f"metric {info.name!r} is not computed per image on maps (needs {info.needs})")
    fn, maps = info.fn, inputs.maps
    if info.needs == "map":
        out = fn(maps, **params)
    elif info.needs == "truth":
        out = fn(maps, masks=inputs.masks, points=inputs.points, **params)
    else:
        given = {"points": inputs.points, "mask": inputs.masks, "maps_pair": inputs.reference}[info.needs]
        if given is None:
            raise RobustXAIError(f"metric {info.name!r} needs {info.needs}, which was not given")
        out = fn(given, maps, **params) if info.needs == "maps_pair" else fn(maps, given, **params)
    if not isinstance(out, torch.Tensor):
        raise RobustXAIError(f"metric {info.name!r} returned {type(out).__name__}, not a tensor")
    return out
