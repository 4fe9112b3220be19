"""The public surface of robustxai, pinned: ``robustxai.__all__`` and each subpackage's ``__all__``.

Why (httpx's habit): a name added to or dropped from a package's ``__all__`` changes what users may rely on,
so it must be a decision, not a side effect. A deliberate change updates :data:`PUBLIC` in the same commit;
an accidental one fails here. Every package must declare ``__all__``, and every name in it must resolve.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import robustxai

#: Each package's ``__all__``, as it should be (sorted for reading; the order of ``__all__`` is free).
PUBLIC: dict[str, tuple[str, ...]] = {
    "robustxai": (
        "Attack", "ConfigError", "DataError", "Explainer", "Explanation", "FitConfig", "ImageDataset",
        "ModelWrapper", "RobustXAIError", "Sample", "Truth", "UnknownNameError", "__version__",
        "create_attack", "create_explainer", "create_manipulation", "create_model", "fit",
        "keep_freed_memory", "list_attacks", "list_explainers", "list_manipulations", "list_metrics",
        "list_models", "load_config", "load_model", "metrics", "open_run", "run_audit", "save_model",
        "wrap_model",
    ),
    "robustxai.attacks": (
        "ATTACKS", "Attack", "SanityWarning", "cascade", "create_attack", "gradient_masking_check",
        "is_correct", "list_attacks", "project", "robust_accuracy", "sanity_checks", "sweep",
    ),
    "robustxai.audit": ("AuditConfig", "PROFILES", "load_config", "validate_config"),
    "robustxai.claims": (
        "CLAIMS", "CLAIM_COLUMNS", "Claim", "ClaimResult", "claims_frame", "evaluate_claims", "list_claims",
    ),
    "robustxai.data": (
        "AnnotationResult", "FolderDataset", "ImageDataset", "Sample", "SubsetDataset", "SyntheticFracture",
        "Transform", "Truth", "create_transform", "list_formats", "list_transforms", "read_annotations",
        "read_manifest", "split_indices", "stack_images", "write_folder",
    ),
    "robustxai.explain": (
        "Attribution", "EXPLAINERS", "Explainer", "Explanation", "create_explainer", "explain_targets",
        "list_explainers", "reduce_channels", "resolve_targets",
    ),
    "robustxai.manipulate": (
        "BetaSchedule", "Budget", "MANIPULATIONS", "Manipulate", "ManipulationResult", "MaskOrPoints",
        "Objective", "Optimiser", "PRESETS", "Selection", "SoftplusSurrogate", "beta_schedule",
        "create_manipulation", "default_target", "explained_class", "list_manipulations",
        "manipulation_from_settings",
    ),
    "robustxai.metrics": (
        "METRICS", "MapInputs", "MetricInfo", "accuracy", "auc", "bootstrap_ci", "delta_accuracy", "evaluate",
        "get_metric", "headline_metric", "label_accuracy", "list_metrics", "map_metrics", "mask_area",
        "minmax", "mse", "peak_in_region", "pearson", "point_coverage", "pointing_game", "predictions",
        "rankdata", "register_metric", "relevance_mass", "rmse", "spearman_permutation", "ssim", "topk_iou",
        "topk_mask", "unregister_metric",
    ),
    "robustxai.models": (
        "MODELS", "ModelWrapper", "create_model", "is_multilabel", "list_model_families", "list_models",
        "load_model", "predict_labels", "read_checkpoint", "read_model_meta", "save_model", "task_loss",
        "wrap_model",
    ),
    "robustxai.report": (
        "ReportContext", "ReportTables", "Section", "build_report", "compute_tables", "list_sections",
        "load_run", "register_section", "report_section", "summarize",
    ),
    "robustxai.results": (
        "CLEAN", "CLEAN_CONDITION", "Condition", "MANIPULATION_PREFIX", "MetricKey", "ROW_TABLES", "RunData",
        "RunRows", "STORE_FILE", "Store", "load_run", "read_rows",
    ),
    "robustxai.training": ("FitConfig", "FitResult", "fit"),
    "robustxai.web": ("create_app",),
}  # fmt: skip


def _packages() -> list[str]:
    """``robustxai`` and every subpackage found on disk (a folder with an ``__init__.py``)."""
    found = ["robustxai"]
    for info in pkgutil.walk_packages(robustxai.__path__, "robustxai."):
        if info.ispkg:
            found.append(info.name)
    return found


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_all_is_pinned(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} declares no __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ names something twice"
    added, dropped = sorted(set(exported) - set(PUBLIC[name])), sorted(set(PUBLIC[name]) - set(exported))
    assert not added and not dropped, (
        f"{name}.__all__ changed: added {added}, dropped {dropped}; if that is intended, update PUBLIC in "
        f"{__file__}"
    )


@pytest.mark.parametrize("name", _packages())
def test_every_package_declares_an_all_that_resolves(name: str) -> None:
    """A package not pinned yet (a new one) must still say what it exports, and every name must exist."""
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list | tuple) and exported, f"{name} must declare a non-empty __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names {missing}, which {name} does not define"


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from robustxai import *", namespace)  # noqa: S102 - the statement users write
    assert sorted(set(namespace) - {"__builtins__"}) == sorted(PUBLIC["robustxai"])


def test_the_pin_sees_a_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check fails when a name slips into ``__all__`` (so it cannot pass vacuously)."""
    monkeypatch.setattr(robustxai.training, "__all__", [*robustxai.training.__all__, "epoch_passes"])
    with pytest.raises(AssertionError, match=r"added \['epoch_passes'\]"):
        test_all_is_pinned("robustxai.training")
