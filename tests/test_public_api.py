"""The public surface of robustxai, pinned: ``robustxai.__all__`` and each subpackage's ``__all__``.

Why (httpx's habit): a name added to or dropped from a package's ``__all__`` changes what users may rely on,
so it must be a decision, not a side effect. A deliberate change updates :data:`PUBLIC` in the same commit;
an accidental one fails here. Every package must declare ``__all__``, and every name in it must resolve.

The modules behind the packages are private: every module's own name or a parent package's starts with
``_``, except the few in :data:`PUBLIC_MODULES`, so a user's import path is a package (``robustxai``,
``robustxai.explain`` …) and a module can be split, merged or renamed without breaking anyone. Tests use that
public API too; a test file that reaches into a private module or name says so with a module-level
``WHITE_BOX = "why"``, so black-box and white-box tests can be told apart.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import robustxai

#: Each package's ``__all__``, as it should be (sorted for reading; the order of ``__all__`` is free).
PUBLIC: dict[str, tuple[str, ...]] = {
    "robustxai": (
        "Attack", "ConfigError", "DataError", "Explainer", "Explanation", "FitConfig", "ImageDataset",
        "ModelWrapper", "NotApplicableError", "RobustXAIError", "Sample", "Truth", "UnknownNameError",
        "__version__",
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


#: Modules (not packages) with a public name, each with the reason; every other module is private.
PUBLIC_MODULES: dict[str, str] = {
    "robustxai.cli": "the console script (`robustxai = robustxai.cli:app`) and `python -m robustxai.cli`",
}

SRC = Path(__file__).resolve().parents[1] / "src" / "robustxai"
TESTS = Path(__file__).resolve().parent


def _is_private(dotted: str) -> bool:
    """Whether a ``robustxai`` name has a private part: ``_x`` (a dunder like ``__version__`` is not)."""
    return any(p.startswith("_") and not p.endswith("__") for p in dotted.split(".")[1:])


def _public_named_modules(paths: list[Path], root: Path) -> list[str]:
    """The modules among ``paths`` (files under ``root``, the package folder) that are not private."""
    found = []
    for path in paths:
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] != "__init__" and not _is_private(".".join(parts)):
            found.append(".".join(parts))
    return sorted(found)


def test_every_module_is_private_or_listed() -> None:
    """A new module gets a private name (``_name.py``) and is exported through its package's ``__all__``."""
    public = _public_named_modules(sorted(SRC.rglob("*.py")), SRC)
    unexpected = [name for name in public if name not in PUBLIC_MODULES]
    assert not unexpected, (
        f"modules with a public name: {unexpected}; rename them with a leading underscore and export what "
        f"users need from the package's __all__ (or, if users must import the module itself, add it to "
        f"PUBLIC_MODULES in {__file__} with the reason)"
    )
    stale = sorted(set(PUBLIC_MODULES) - set(public))
    assert not stale, f"PUBLIC_MODULES lists modules that do not exist (remove them): {stale}"


def test_the_module_rule_sees_a_public_module(tmp_path: Path) -> None:
    root = tmp_path / "robustxai"
    files = ("__init__.py", "cli.py", "_a.py", "audit/__init__.py", "audit/_b.py", "audit/c.py", "_d/e.py")
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    assert _public_named_modules(sorted(root.rglob("*.py")), root) == ["robustxai.audit.c", "robustxai.cli"]


def _private_uses(source: str) -> set[str]:
    """Private robustxai modules or names a file imports, or passes as a ``"robustxai...."`` string to a call
    (a ``mock.patch`` or ``monkeypatch.setattr`` target, an ``importlib.import_module`` name)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call):
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        found |= {n for n in names if n.split(".")[0] == "robustxai" and " " not in n and _is_private(n)}
    return found


def _declares_white_box(source: str) -> bool:
    """Whether a module sets ``WHITE_BOX`` to a non-empty reason at its top level."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "WHITE_BOX" for t in node.targets
        ):
            return isinstance(node.value, ast.Constant) and bool(str(node.value.value).strip())
    return False


def test_tests_use_the_public_api_or_say_they_are_white_box() -> None:
    unmarked = {}
    for path in sorted(TESTS.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        uses = _private_uses(source)
        if uses and not _declares_white_box(source):
            unmarked[path.relative_to(TESTS).as_posix()] = sorted(uses)
    assert not unmarked, (
        "test files using private modules or names without a module-level WHITE_BOX = 'why' (use the public "
        f"API, or declare the file white-box): {unmarked}"
    )


def test_the_white_box_check_sees_a_private_import() -> None:
    private_module = "from robustxai.audit._plan import plan_units\n"
    private_name = "from robustxai.audit import _secret\n"
    patched = "def test(monkeypatch):\n    monkeypatch.setattr('robustxai.audit._runner.x', 1)\n"
    public = "import robustxai as rx\nfrom robustxai import __version__\nfrom robustxai.cli import app\n"
    assert _private_uses(private_module) == {"robustxai.audit._plan.plan_units"}
    assert _private_uses(private_name) == {"robustxai.audit._secret"}
    assert _private_uses(patched) == {"robustxai.audit._runner.x"}
    assert _private_uses(public) == set()
    assert not _declares_white_box(private_module)
    assert _declares_white_box('"""Doc."""\n\nimport os\n\nWHITE_BOX = "tests the plan\'s internals"\n')
    assert not _declares_white_box('WHITE_BOX = ""\n')


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
