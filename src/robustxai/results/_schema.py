"""The run store's vocabulary, defined once: row records, metric keys, conditions and unit kinds.

The audit writes rows in these layouts and the report, the export and ``open_run`` read them back, so every
name that crosses the store lives here instead of being spelled in the writer and parsed in each reader:

- **Row records** (:class:`PredictionRow`, :class:`MetricRow`, …): one typed record per table row, fields in
  the table's column order. They are ``NamedTuple``s, so SQLite takes them as they are.
- **Conditions**: ``condition`` is :data:`CLEAN`, an attack name, or :data:`MANIPULATION_PREFIX` + a map
  method; ``epsilon`` is 0 for clean. In code a condition is the pair :data:`Condition`.
- **Metric keys** (:class:`MetricKey`): a stored metric name is ``name`` or ``name@qualifier``
  (``point_coverage@15`` for the top 15 %, ``score@<label>`` for a multi-label logit); map-similarity
  metrics carry the prefix ``map_`` (``map_ssim``).
- **Unit kinds**: the first part of a unit id (``robustness/…``), recorded in the ``units`` table.
- **The schema version**: the ``meta`` row :data:`FORMAT_KEY` = :data:`STORE_FORMAT` that every store gets
  when it is created, and that makes a folder a robustxai run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "FORMAT_KEY",
    "STORE_FORMAT",
    "ADV_SCORE",
    "CLEAN_SCORE",
    "CLEAN",
    "CLEAN_CONDITION",
    "EXPLANATION_UNIT",
    "LABEL",
    "LABEL_PREFIX",
    "MANIPULATION_IMAGE",
    "MANIPULATION_ORIGINAL",
    "MANIPULATION_PREFIX",
    "MANIPULATION_TARGET",
    "MANIPULATION_UNIT",
    "MAP_PREFIX",
    "NO_EXPLAINER",
    "ROBUSTNESS_UNIT",
    "SANITY_UNIT",
    "SCORE",
    "SCORE_PREFIX",
    "UNIT_KIND_NAMES",
    "Condition",
    "FigureMapRow",
    "MetricKey",
    "MetricRow",
    "PredictionRow",
    "SampleRow",
    "StoreRow",
    "WarningRow",
    "is_manipulation",
    "manipulation_condition",
    "manipulation_method",
]

# -- the schema version ---------------------------------------------------------------------------------
#: The marker row every store gets when it is created (``meta`` key, value): what makes a folder a robustxai
#: run. Stores of earlier versions are recognised by their ``versions`` row naming robustxai.
FORMAT_KEY = "store_format"
STORE_FORMAT = "robustxai-store/1"

# -- conditions ------------------------------------------------------------------------------------------
#: The ``condition`` of unattacked images (its ``epsilon`` is 0).
CLEAN = "clean"
#: A condition as ``(attack name or CLEAN, epsilon)``.
Condition = tuple[str, float]
#: The clean condition as a pair.
CLEAN_CONDITION: Condition = (CLEAN, 0.0)
#: ``condition`` of the manipulation attack's rows is this prefix followed by the map method attacked.
MANIPULATION_PREFIX = "manipulate:"
#: ``explainer`` of metric rows that involve no map (multi-label scores, manipulation scores).
NO_EXPLAINER = ""


def manipulation_condition(method: str) -> str:
    """The stored condition of the manipulation attack on ``method`` (``"manipulate:saliency"``)."""
    return MANIPULATION_PREFIX + method


#: ``figure_maps`` condition of the manipulation stage's unattacked maps and target squares.
MANIPULATION_ORIGINAL = manipulation_condition("original")
#: ``figure_maps`` explainers of the manipulation stage that are no map method: the target square and the
#: attacked image itself.
MANIPULATION_TARGET = "target"
MANIPULATION_IMAGE = "adv_image"


def is_manipulation(condition: object) -> bool:
    """Whether a stored condition belongs to the manipulation attack."""
    return str(condition).startswith(MANIPULATION_PREFIX)


def manipulation_method(condition: object) -> str | None:
    """The map method of a manipulation condition (``None`` for any other condition)."""
    text = str(condition)
    return text[len(MANIPULATION_PREFIX) :] if text.startswith(MANIPULATION_PREFIX) else None


# -- metric keys -----------------------------------------------------------------------------------------
#: Separates a metric's name from its qualifier (a top-k percentage or a label name).
SEPARATOR = "@"
#: Prefix of the map-similarity metrics that compare a clean map with an attacked one (``map_ssim``).
MAP_PREFIX = "map_"
#: Names of the per-label rows of multi-label models (explainer ``""``): the logit and the 0/1 target.
SCORE = "score"
LABEL = "label"
SCORE_PREFIX = SCORE + SEPARATOR
LABEL_PREFIX = LABEL + SEPARATOR
#: Per-class rows of the manipulation stage (explainer ``""``, qualifier the class index): the probability
#: on the clean and on the manipulated image; the 0/1 target is :data:`LABEL`.
CLEAN_SCORE = "clean_score"
ADV_SCORE = "adv_score"


@dataclass(frozen=True)
class MetricKey:
    """A stored metric name, formatted and parsed in one place.

    Attributes:
        name: The metric (``point_coverage``, ``map_ssim``, ``score``).
        qualifier: What follows ``@`` (``"15"`` for the top 15 %, a label name), ``""`` when there is none.
    """

    name: str
    qualifier: str = ""

    def __str__(self) -> str:
        """The name as stored: ``name`` or ``name@qualifier``."""
        return f"{self.name}{SEPARATOR}{self.qualifier}" if self.qualifier else self.name

    @classmethod
    def parse(cls, text: object) -> MetricKey:
        """Split a stored name at its first ``@`` (a label name may itself hold one)."""
        name, _, qualifier = str(text).partition(SEPARATOR)
        return cls(name, qualifier)

    @classmethod
    def at_top(cls, name: str, top: float) -> MetricKey:
        """The key of a metric on the top ``top`` fraction of a map: ``rmse@15`` for ``("rmse", 0.15)``."""
        return cls(name, f"{round(top * 100):g}")

    @property
    def base(self) -> str:
        """The underlying metric: ``point_coverage@15`` gives ``point_coverage``, ``map_ssim`` ``ssim``."""
        return self.name.removeprefix(MAP_PREFIX)

    @property
    def top_percent(self) -> int | None:
        """The top-k percentage of the qualifier (``15`` for ``point_coverage@15``), else ``None``."""
        return int(self.qualifier) if self.qualifier.isdecimal() else None


# -- unit kinds ------------------------------------------------------------------------------------------
ROBUSTNESS_UNIT = "robustness"
EXPLANATION_UNIT = "explanation"
SANITY_UNIT = "sanity"
MANIPULATION_UNIT = "manipulation"
#: Every unit kind, in the order the plan runs them.
UNIT_KIND_NAMES = (ROBUSTNESS_UNIT, EXPLANATION_UNIT, SANITY_UNIT, MANIPULATION_UNIT)


# -- row records -----------------------------------------------------------------------------------------
class SampleRow(NamedTuple):
    """One evaluated image of ``samples`` (no pixels, no identifiers)."""

    sample_id: str
    idx: int
    label: int
    has_truth: int
    n_points: int


class PredictionRow(NamedTuple):
    """One prediction of ``predictions``: a model on one image under one condition."""

    model: str
    condition: str
    epsilon: float
    sample_id: str
    label: int
    pred: int
    correct: int


class MetricRow(NamedTuple):
    """One per-sample value of ``metrics`` (``explainer`` is :data:`NO_EXPLAINER` when no map is involved)."""

    model: str
    condition: str
    epsilon: float
    explainer: str
    metric: str
    sample_id: str
    value: float


class FigureMapRow(NamedTuple):
    """One map the report draws (``figure_maps``); the store saves ``map`` as a float16 ``.npy`` blob."""

    model: str
    condition: str
    epsilon: float
    explainer: str
    sample_id: str
    map: np.ndarray


class WarningRow(NamedTuple):
    """One warning of ``warnings`` (``model`` is ``""`` for run-wide warnings)."""

    model: str
    code: str
    message: str


#: Every kind of row a unit of work may hand to the store.
StoreRow = PredictionRow | MetricRow | FigureMapRow | WarningRow
