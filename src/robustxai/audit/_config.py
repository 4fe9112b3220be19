"""Audit configuration: TOML → validated pydantic models (unknown keys are errors).

A run is described by a profile (``smoke`` or ``default``, shipped in ``audit/profiles``) optionally
overridden by a user TOML file, key by key. The resolved configuration is saved next to the results, so
every number in a report can be traced to the exact settings that produced it.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from robustxai._errors import ConfigError
from robustxai.audit import _config_budgets
from robustxai.audit._config_budgets import check_attack_budgets, check_linf, check_manipulation_budgets
from robustxai.audit._config_errors import did_you_mean, format_validation_error, huge_ints
from robustxai.audit._config_executor import ExecutorConfig
from robustxai.data._files import DEFAULT_MAX_PIXELS

PROFILES = ("smoke", "default", "paper")
#: Data keys that only refuse input, never change an image read: left out of trained-model cache keys.
DATA_GUARD_KEYS = ("max_pixels", "allow_outside_root")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the images come from."""

    source: Literal["synthetic-fracture", "folder"] = "synthetic-fracture"
    path: str | None = Field(None, description="folder data set root (source = 'folder')")
    test_path: str | None = Field(None, description="separate test folder; default: manifest split 'test'")
    n_train: int = Field(2000, ge=10)
    n_test: int = Field(256, ge=2)
    size: int = Field(64, ge=16, le=224)
    shortcut: float = Field(0.0, ge=0.0, le=1.0)
    write_to_disk: bool = Field(True, description="write the synthetic set as PNGs and read it back")
    channels: Literal[1, 3] = Field(1, description="1 (grayscale) or 3 (gray repeated, or RGB as stored)")
    transforms: list[str | dict[str, object]] = Field(
        default_factory=list,
        description='intensity transforms after resizing: ["highpass"], [{name = "highpass", sigma = 10}]',
    )
    manifest: str | None = Field(None, description="CSV manifest in data.path (default manifest.csv)")
    annotations: str | None = Field(
        None, description="ground-truth file or folder (points, boxes, masks) of the test images"
    )
    annotation_format: str = Field("auto", description="format of data.annotations ('auto' detects it)")
    uncertain: Literal["zero", "one", "ignore"] = Field(
        "zero", description="multi-label manifests: policy for uncertain (-1) cells"
    )
    blank: Literal["zero", "uncertain"] = Field("zero", description="multi-label manifests: blank cells")
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        description="largest image or mask (rows x columns) read; larger ones are left out with a warning",
    )
    allow_outside_root: bool = Field(
        True, description="read manifest paths and linked folders outside data.path (false: refuse them)"
    )

    @model_validator(mode="after")
    def _folder_needs_path(self) -> DataConfig:
        if self.source == "folder" and not self.path:
            raise ValueError("data.path is required when data.source = 'folder'")
        if self.source != "folder":
            defaults = {"manifest": None, "annotations": None, "uncertain": "zero", "blank": "zero"}
            folder_only = [k for k, default in defaults.items() if getattr(self, k) != default]
            if folder_only:
                raise ValueError(f"{', '.join(folder_only)} need(s) data.source = 'folder'")
            if not self.write_to_disk and (self.channels != 1 or self.transforms):
                raise ValueError("channels and transforms of the synthetic set need write_to_disk = true")
        for t in self.transforms:
            if isinstance(t, dict) and not isinstance(t.get("name"), str):
                raise ValueError(f"a transform table needs a name, got {t}")
        return self


class TrainingConfig(_Strict):
    """Shared training settings (see :class:`robustxai.training.FitConfig`)."""

    epochs: int = Field(8, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    eps: float = Field(4 / 255, ge=0, description="L∞ budget of adversarial training, below 1")
    attack_steps: int = Field(7, ge=1)
    eps_warmup_epochs: int = Field(0, ge=0, description="ε ramp of adversarial training (see FitConfig)")
    patience: int = Field(3, ge=1)
    val_fraction: float = Field(0.15, ge=0, lt=1)

    @field_validator("eps")
    @classmethod
    def _linf_below_one(cls, v: float) -> float:
        check_linf([v], "training.eps (PGD adversarial training)")
        return v


class ModelConfig(_Strict):
    """One audited model: trained on the spot (cached) or loaded from a saved directory."""

    name: str = Field(min_length=1)
    arch: str = "smallcnn"
    training: Literal["standard", "pgd", "none"] = Field(
        "standard", description="'none': evaluate the model as built (e.g. zoo weights), without training"
    )
    checkpoint: str | None = Field(None, description="directory written by robustxai.save_model")
    arch_kwargs: dict[str, object] = Field(
        default_factory=dict,
        description="architecture keywords; zoo names (torchvision:…, timm:…, robustbench:…) take head, "
        "freeze_backbone, checkpoint (a weights file), trust_checkpoint, …",
    )
    epochs: int | None = Field(None, ge=1, description="overrides training.epochs for this model")
    lr: float | None = Field(None, gt=0, description="overrides training.lr for this model")
    init_from: str | None = Field(
        None, description="start from the weights of an earlier model in this list (shared layers only)"
    )
    eps: float | None = Field(
        None, ge=0, description="overrides training.eps for this model (training = 'pgd' only): a ladder"
    )
    reference_rank: int | None = Field(
        None, ge=1, description="the model's rank in a published leaderboard or paper, shown beside ours"
    )
    batch_size: Annotated[int, Field(strict=True, ge=1)] | Literal["auto"] | None = Field(
        None,
        description="rows per pass of this model's attacks and explainers (None: the audit's batch_size; "
        "'auto': chosen from its measured pass times and free memory, printed in the plan)",
    )
    channels_last: StrictBool | Literal["auto"] = Field(
        False, description="channels_last memory layout (true, or 'auto': convolutional models only)"
    )
    precision: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="forward passes under torch.autocast in this type, not training (float16: GPU)"
    )

    @model_validator(mode="after")
    def _eps_needs_pgd(self) -> ModelConfig:
        if self.eps is not None and self.training != "pgd":
            raise ValueError(f"model {self.name!r}: eps is a PGD training budget; needs training = 'pgd'")
        check_linf([self.eps or 0.0], f"model {self.name!r} eps (PGD adversarial training)")
        return self


class AttackConfig(_Strict):
    """One attack evaluated at one or more budgets."""

    name: str
    epsilons: list[float] = Field(default_factory=lambda: [4 / 255], min_length=1)
    params: dict[str, object] = Field(default_factory=dict)

    @field_validator("epsilons")
    @classmethod
    def _non_negative(cls, v: list[float]) -> list[float]:
        bad = [e for e in v if not e >= 0 or e == float("inf")]
        if bad:
            raise ValueError(f"epsilons must be ≥ 0 and finite, got {bad}")
        return v

    @model_validator(mode="after")
    def _linf_below_one(self) -> AttackConfig:
        check_attack_budgets(self.name, self.epsilons, self.params)
        return self


class ExplainConfig(_Strict):
    """Which maps to compute, on how many annotated test images, and how to score them."""

    methods: list[str] = Field(default_factory=lambda: ["saliency", "integrated_gradients", "gradcam"])
    params: dict[str, dict[str, object]] = Field(
        default_factory=dict, description="per-method keywords; entries for methods not listed are unused"
    )
    n_images: int = Field(64, ge=1)
    tops: list[float] = Field(default_factory=lambda: [0.05, 0.15, 0.25, 0.85])
    batch_size: int = Field(32, ge=1)
    attacks: list[str] | None = Field(
        None, description="attacks whose adversarial images are explained too (default: every attack)"
    )
    epsilons: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = Field(
        None, description="budgets whose adversarial images are explained (default: every budget)"
    )
    pointing_radius: float = Field(
        3.0, ge=0, description="pointing game: a hit within this many pixels of an expert point"
    )

    def explains(self, condition: tuple[str, float]) -> bool:
        """Whether an attacked ``condition`` (attack, ε) is explained (ε within 1e-9 of ``epsilons``)."""
        chosen = self.attacks is None or condition[0] in self.attacks
        return chosen and (self.epsilons is None or any(abs(condition[1] - e) <= 1e-9 for e in self.epsilons))

    @field_validator("tops")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < t <= 1 for t in v):
            raise ValueError(f"tops must be fractions in (0, 1], got {v}")
        names = [f"{round(t * 100):g}" for t in v]
        if len(set(names)) != len(names):
            raise ValueError(f"tops must differ by at least one percentage point (metric names), got {v}")
        return v


class ManipulationConfig(_Strict):
    """The explanation-manipulation stage (see :mod:`robustxai.manipulate`)."""

    methods: list[str] = Field(default_factory=lambda: ["saliency", "gradcam"], min_length=1)
    evaluate: list[str] = Field(
        default_factory=list, description="extra explainers scored on the attacked images (transfer)"
    )
    transfer_from: list[str] = Field(
        default_factory=lambda: ["integrated_gradients", "gradcam"],
        description="attacked methods whose images the 'evaluate' explainers are scored on",
    )
    n_images: int = Field(16, ge=1)
    iterations: int = Field(300, ge=1)
    lr: float = Field(2e-4, gt=0)
    alpha_map: float | None = Field(None, ge=0, description="None: the paper's α₁ scaled to the image size")
    alpha_pred: float | None = Field(None, ge=0, description="None: the paper's α₂ scaled to the image size")
    eps: float | None = Field(None, ge=0, description="L∞ bound; None = unbounded (clipped to [0, 1])")
    target_size: float = Field(0.25, gt=0, le=1)
    batch_size: int = Field(16, ge=1)
    params: dict[str, object] = Field(default_factory=dict, description="other Manipulate keywords")
    method_params: dict[str, dict[str, object]] = Field(
        default_factory=dict,
        description="per attacked method: keywords (lr, iterations, params …) that override the ones above",
    )
    models: list[str] | None = Field(None, description="audited models to attack (None = all)")

    @model_validator(mode="after")
    def _linf_below_one(self) -> ManipulationConfig:
        check_manipulation_budgets(self.eps, self.params, self.method_params)
        return self

    def attacks(self, model: str) -> bool:
        """Whether the stage attacks the audited model ``model`` (``models = []``: none)."""
        return self.models is None or model in self.models


class ReportConfig(_Strict):
    """What the report draws."""

    n_figure: int = Field(4, ge=0)
    primary_attack: str = "pgd"
    primary_epsilon: float = Field(4 / 255, ge=0)


class SanityConfig(_Strict):
    """AutoAttack-style checks run before any robust accuracy is trusted (see attacks/_sanity.py)."""

    enabled: bool = True
    n_images: int = Field(16, ge=1, description="images the checks probe")
    masking_gap: float = Field(
        0.10, ge=0, le=1, description="flag gradient masking when PGD's robust accuracy tops APGD's by this"
    )


class AuditConfig(_Strict):
    """The whole audit."""

    name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    seed: int = 0
    batch_size: int = Field(64, ge=1, description="batch size of predictions and attacks")
    cache_dir: str | None = Field(None, description="trained-model/data cache (default ~/.cache/robustxai)")
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    models: list[ModelConfig] = Field(min_length=1)
    attacks: list[AttackConfig] = Field(default_factory=list)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    manipulation: ManipulationConfig | None = None
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    sanity: SanityConfig = Field(default_factory=SanityConfig)
    _source: str = pydantic.PrivateAttr("")  # the file it was read from (messages only; never dumped)

    @property
    def source(self) -> str:
        """The config file this was read from (``""``: built in Python or from a profile alone)."""
        return self._source

    @model_validator(mode="after")
    def _unique_names(self) -> AuditConfig:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        for i, m in enumerate(self.models):
            if m.init_from is not None and m.init_from not in names[:i]:
                raise ValueError(
                    f"model {m.name!r}: init_from must name an earlier model, got {m.init_from!r}"
                )
        _config_budgets.check_precisions(self.models, self.executor)
        attacks = [a.name for a in self.attacks]
        if len(set(attacks)) != len(attacks):
            raise ValueError(f"attack names must be unique, got {attacks}")
        return self

    def digest(self) -> str:
        """A short hash of the resolved configuration."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


def deep_merge(base: Mapping[str, object], override: Mapping[str, object]) -> dict[str, object]:
    """Merge ``override`` into ``base`` recursively (tables merge; lists and values replace)."""
    out = dict(base)
    for key, value in override.items():
        previous = out.get(key)
        if isinstance(value, dict) and isinstance(previous, dict):
            out[key] = deep_merge(previous, value)
        else:
            out[key] = value
    return out


def _profile_text(profile: str) -> str:
    if profile not in PROFILES:
        raise ConfigError(
            f"unknown profile {profile!r}{did_you_mean(str(profile), PROFILES)}; "
            f"known profiles: {', '.join(PROFILES)}"
        )
    return resources.files("robustxai.audit").joinpath("profiles", f"{profile}.toml").read_text()


def profile_dict(profile: str) -> dict[str, object]:
    """The raw settings of a built-in profile."""
    return tomllib.loads(_profile_text(profile))


def profile_description(profile: str) -> str:
    """What a built-in profile is for: the comment on its first line (``robustxai list profiles``)."""
    first = _profile_text(profile).partition("\n")[0]
    return first.lstrip("#").strip() if first.startswith("#") else ""


def _format_error(err: ValidationError, source: str) -> str:
    return format_validation_error(err, source, AuditConfig)


def validate_config(raw: Mapping[str, object], source: str = "") -> AuditConfig:
    """Validate a raw settings dict, turning pydantic errors into one-line messages.

    Integers beyond 64 bits are refused here: TOML does not allow them, and torch cannot take them.
    """
    huge = huge_ints(raw)
    if huge:
        raise ConfigError(
            f"invalid config {source}: {'; '.join(f'{k}: integer out of the 64-bit range' for k in huge)}"
        )
    try:
        cfg = AuditConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None
    cfg._source = "" if source.startswith("(profile") else source
    return cfg


def load_config(path: str | Path | None = None, profile: str = "default", **overrides: object) -> AuditConfig:
    """Resolve a profile, an optional TOML file on top, and keyword overrides into a validated config."""
    raw = profile_dict(profile)
    source = f"(profile {profile})"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            user = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError, OSError) as err:
            raise ConfigError(f"config file {p} is not valid TOML: {err}") from None
        raw = deep_merge(raw, user)
        source = str(p)
    raw = deep_merge(raw, {k: v for k, v in overrides.items() if v is not None})
    return validate_config(raw, source)
