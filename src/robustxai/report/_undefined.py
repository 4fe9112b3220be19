"""The report's account of undefined per-image metric values: how many, where, and the usual reason.

A metric is undefined (NaN) for an image when its definition has nothing to work on — no expert point for
point coverage, an empty mask for IoU, a map with no positive attribution for relevance mass, a constant map
for Pearson's r. Those images are left out of the means; this note says which explainer × metric pairs lost
most of them, so a reader can tell a missing annotation from a degenerate map (an all-zero LIME map, say).
"""

from __future__ import annotations

import pandas as pd

from robustxai.metrics import map_metrics
from robustxai.results._schema import MetricKey

SHOWN = 4


def causes() -> dict[str, str]:
    """Why each base metric can be NaN: the registered map metrics' declared ``undefined`` reasons.

    Keyed by base metric (``point_coverage`` for ``point_coverage@15``, ``pearson`` for ``map_pearson``).
    """
    return {info.name: info.undefined for info in map_metrics() if info.undefined}


def base_metric(metric: str) -> str:
    """``point_coverage@15`` → ``point_coverage``; ``map_pearson`` → ``pearson``."""
    return MetricKey.parse(metric).base


def undefined_note(alignment: pd.DataFrame) -> str | None:
    """One sentence on the undefined values of an alignment table (with ``n_missing``), or ``None``.

    Args:
        alignment: Aggregates with columns ``explainer, metric, n_missing`` (one row per model × condition ×
            explainer × metric).

    Returns:
        The total, then the explainer × metric pairs with the most undefined values and their usual cause.
    """
    if alignment.empty or int(alignment["n_missing"].sum()) == 0:
        return None
    frame = alignment.assign(base=alignment["metric"].astype(str).map(base_metric))
    counts = frame.groupby(["explainer", "base"], sort=True)["n_missing"].sum()
    counts = counts[counts > 0].sort_values(ascending=False, kind="stable")
    parts = []
    why = causes()
    for (explainer, base), n in list(counts.items())[:SHOWN]:
        cause = why.get(str(base))
        parts.append(f"{explainer} / {base} {int(n)}" + (f" ({cause})" if cause else ""))
    if len(counts) > SHOWN:
        rest = len(counts) - SHOWN
        parts.append(f"{int(counts.iloc[SHOWN:].sum())} more in {rest} other pair{'s' if rest > 1 else ''}")
    total = int(counts.sum())
    return (
        f"{total} per-image metric values were undefined and were left out of the means; each table cell's "
        f"tooltip gives its n. Most of them: {'; '.join(parts)}."
    )
