"""The corpus itself: at least 60 distinct cases, unique ids, every outcome class and input kind present."""

from __future__ import annotations

import test_corpus_annotations as annotations
import test_corpus_config as config
import test_corpus_data as data
import test_corpus_models as models
import test_corpus_rundirs as rundirs
from _cases import OUTCOMES, Case

GROUPS: dict[str, list[Case]] = {
    "config": config.TOML_CASES,
    "cli": config.CLI_CASES,
    "images": data.IMAGE_CASES,
    "manifests": data.MANIFEST_CASES,
    "dicom": data.DICOM_CASES,
    "annotations": annotations.JSON_CASES + annotations.EXTERNAL_CASES,
    "checkpoints": models.CKPT_CASES,
    "run directories": rundirs.RUN_CASES,
}


def test_the_corpus_has_at_least_60_distinct_cases_of_every_kind() -> None:
    cases = [c for group in GROUPS.values() for c in group]
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids) >= 60
    assert all(len(group) >= 5 for group in GROUPS.values()), {k: len(v) for k, v in GROUPS.items()}
    assert {c.outcome for c in cases} == set(OUTCOMES)
