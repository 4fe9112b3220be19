"""Per-label AUC and accuracy of multi-label (CheXpert-style) models, clean and under each attack.

The robustness units of a multi-label model store, besides exact-match prediction rows, each image's logit
and 0/1 target per label in the ``metrics`` table (explainer ``""``, metrics ``score@<label>`` and
``label@<label>``; see :func:`robustxai.results.MetricKey`). This module turns them into
one row per model × condition × ε × label:

- ``auc``: ROC AUC of the label's logits (:func:`robustxai.metrics.auc`); NaN when the test set holds only
  positives or only negatives of that label;
- ``accuracy``: share of images whose prediction for the label (logit > 0) equals the target
  (:func:`robustxai.metrics.label_accuracy`);
- ``n``: images scored.

Written to ``tables/multilabel.csv`` (by :mod:`robustxai.report._run_tables`) and shown as one HTML table;
a run without multi-label models has neither.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from robustxai.metrics import auc, label_accuracy
from robustxai.report._html_tables import DASH, Cell, HtmlTable
from robustxai.report._numbers import fmt_number
from robustxai.report._tables import condition_label
from robustxai.results._run import RunData
from robustxai.results._schema import CLEAN, LABEL_PREFIX, MANIPULATION_PREFIX, SCORE_PREFIX

MULTILABEL_COLUMNS = ["model", "condition", "epsilon", "label", "auc", "accuracy", "n"]


def _label_order(run: RunData, labels: set[str]) -> list[str]:
    """Labels in the data set's order (``meta.dataset.class_names``), unknown ones after, sorted."""
    dataset = run.meta.get("dataset")
    known = dataset.get("class_names") if isinstance(dataset, dict) else None
    order = [str(c) for c in known if str(c) in labels] if isinstance(known, list) else []
    return order + sorted(labels - set(order))


def multilabel_table(run: RunData) -> pd.DataFrame:
    """Per-label AUC, accuracy and n per model × condition × ε (columns :data:`MULTILABEL_COLUMNS`).

    Rows are sorted by model, clean before attacks, attack, ε and the data set's label order. Empty (with
    the columns) when the run has no multi-label model.
    """
    m = run.metrics
    if m.empty:
        return pd.DataFrame(columns=MULTILABEL_COLUMNS)
    metric = m["metric"].astype(str)
    is_score = metric.str.startswith(SCORE_PREFIX)
    is_label = metric.str.startswith(LABEL_PREFIX)
    # The manipulation stage keeps per-class rows of its own ("manipulate:<method>" conditions).
    evaluated = ~m["condition"].astype(str).str.startswith(MANIPULATION_PREFIX)
    rows = m[(m["explainer"].astype(str) == "") & (is_score | is_label) & evaluated]
    if not (is_score & evaluated).any() or rows.empty:
        return pd.DataFrame(columns=MULTILABEL_COLUMNS)
    rows = rows.assign(
        kind=np.where(rows["metric"].astype(str).str.startswith(SCORE_PREFIX), "score", "label"),
        label=rows["metric"].astype(str).str.split("@", n=1).str[1],
        epsilon=rows["epsilon"].astype(np.float64).round(12),
    )
    wide = rows.pivot_table(
        index=["model", "condition", "epsilon", "label", "sample_id"],
        columns="kind",
        values="value",
        aggfunc="first",
    )
    if not {"score", "label"} <= set(wide.columns):
        return pd.DataFrame(columns=MULTILABEL_COLUMNS)
    wide = wide.dropna(subset=["score", "label"])
    order = {name: i for i, name in enumerate(_label_order(run, set(rows["label"])))}
    out = []
    for (model, cond, eps, label), group in wide.groupby(level=[0, 1, 2, 3], sort=False):
        scores = torch.tensor(group["score"].to_numpy(), dtype=torch.float64)[:, None]
        targets = torch.tensor(group["label"].to_numpy(), dtype=torch.float64)[:, None]
        out.append(
            (
                str(model),
                str(cond),
                float(eps),
                str(label),
                float(auc(scores, targets)[0]),
                float(label_accuracy(scores, targets)[0]),
                len(group),
            )
        )
    table = pd.DataFrame(out, columns=MULTILABEL_COLUMNS)
    key = pd.DataFrame(
        {
            "m": table["model"],
            "c": table["condition"] != CLEAN,
            "a": table["condition"],
            "e": table["epsilon"],
            "l": table["label"].map(order),
        }
    )
    return table.loc[key.sort_values(["m", "c", "a", "e", "l"], kind="mergesort").index].reset_index(
        drop=True
    )


def multilabel_html(table: pd.DataFrame) -> HtmlTable | None:
    """One row per model × label; AUC and accuracy (%) clean and under each attack × ε. None when empty."""
    if table.empty:
        return None
    conds = list(dict.fromkeys(zip(table["condition"], table["epsilon"], strict=True)))
    conds.sort(key=lambda c: (c[0] != CLEAN, c[0], c[1]))
    cells = {
        (r["model"], r["label"], r["condition"], float(r["epsilon"])): r for r in table.to_dict("records")
    }
    pairs = list(dict.fromkeys(zip(table["model"], table["label"], strict=True)))
    rows: list[list[Cell]] = []
    for model, label in pairs:
        row = [Cell(str(model)), Cell(str(label))]
        for cond, eps in conds:
            r = cells.get((model, label, cond, float(eps)))
            if r is None:
                row += [Cell(DASH), Cell(DASH)]
                continue
            title = f"n = {int(r['n'])} images"
            row += [
                Cell(fmt_number(r["auc"], 1, 100.0), title=title),
                Cell(fmt_number(r["accuracy"], 1, 100.0), title=title),
            ]
        rows.append(row)
    columns = ["model", "label"] + ["AUC (%)", "accuracy (%)"] * len(conds)
    groups = [("", 2)] + [(condition_label(c, e), 2) for c, e in conds]
    return HtmlTable(
        "multilabel",
        "Per-label AUC and accuracy of the multi-label models",
        columns,
        rows,
        "For each label (finding) of a multi-label model: the ROC AUC of its logit (50 = chance, 100 = "
        "every positive image scores above every negative one) and its accuracy (the finding predicted when "
        "its logit is > 0, i.e. sigmoid > 0.5), on clean images and on the adversarial images of each "
        "attack × ε (attacks ascend the summed binary cross-entropy of all labels). A dash means undefined: "
        "the test set holds only positives or only negatives of that label. Table 1's accuracy of these "
        "models is the exact-match accuracy (every label right). Explanation maps of a multi-label model "
        "explain its highest-logit label.",
        groups,
    )
