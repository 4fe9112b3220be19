"""Trust a config may ask for but never grant: full-pickle checkpoints and downloads.

A config file is input like any other: it may come from a colleague, a shared drive or a published
repository. Two model keywords widen what robustxai does with the files and network it is pointed at:
``arch_kwargs.trust_checkpoint`` (the full unpickler, which runs code from the file) and
``arch_kwargs.allow_download`` (the network). A config may *ask* for them, naming the models that need them,
but the caller alone grants them: ``robustxai audit --trust-checkpoint`` / ``--allow-download``, or
``run_audit(..., trust_checkpoint=True, allow_download=True)``. An ask without the grant is a one-line error
that names the key; a grant honours only what the config asks for. Nothing read from disk — a config, the
resolved ``config.toml`` saved in a run, a resumed run's store — can grant either.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustxai._errors import ConfigError
from robustxai.audit._config import AuditConfig, ModelConfig

#: Model keywords that widen trust, with the CLI flag that grants each.
TRUST_KEYS = {"trust_checkpoint": "--trust-checkpoint", "allow_download": "--allow-download"}


@dataclass(frozen=True)
class Grants:
    """What the caller (never a file) allows: the full unpickler, and the library's own downloads."""

    trust_checkpoint: bool = False
    allow_download: bool = False


def _asked(m: ModelConfig, key: str, where: str) -> bool:
    value = m.arch_kwargs.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: arch_kwargs.{key} must be true or false, got {value!r}")
    return value


def _refusal(m: ModelConfig, key: str, where: str) -> ConfigError:
    flag = TRUST_KEYS[key]
    if key == "trust_checkpoint":
        what = m.arch_kwargs.get("checkpoint") or "its checkpoint"
        return ConfigError(
            f"{where}: a config file cannot grant trust; pass {flag} (Python: run_audit(..., "
            f"trust_checkpoint=True)) if you trust {what}, a full pickle can run code when loaded"
        )
    return ConfigError(
        f"{where}: a config file cannot allow downloads; pass {flag} (Python: run_audit(..., "
        f"allow_download=True)) to let {m.arch} download its weights"
    )


def model_trust(
    m: ModelConfig, grants: Grants, index: int | None = None, source: str = ""
) -> dict[str, bool]:
    """The trust keywords ``m`` is built with: what its config asks for, if the caller granted it.

    Args:
        m: One model of the config.
        grants: What the caller allows.
        index: The model's place in ``models``, and ``source`` the config file, both for the message.
        source: See ``index``.

    Raises:
        ConfigError: If the config asks for a key the caller did not grant, in one line naming the key
            (``models[1].arch_kwargs.trust_checkpoint = true in config.toml (model 'x'): …``).
    """
    out = {}
    for key in TRUST_KEYS:
        at = f"models[{index}].arch_kwargs.{key}" if index is not None else f"arch_kwargs.{key}"
        where = f"{at} = true{f' in {source}' if source else ''} (model {m.name!r})"
        asked = _asked(m, key, where.replace(" = true", "", 1))
        if asked and not getattr(grants, key):
            raise _refusal(m, key, where)
        out[key] = asked
    return out


def model_kwargs(m: ModelConfig, grants: Grants) -> dict[str, object]:
    """``m.arch_kwargs`` with the trust keys replaced by what the caller granted (never the file's word).

    Raises:
        ConfigError: If the config asks for trust the caller did not grant.
    """
    trust = model_trust(m, grants)
    kwargs = {k: v for k, v in m.arch_kwargs.items() if k not in TRUST_KEYS}
    return kwargs | {k: v for k, v in trust.items() if v}


def check_grants(cfg: AuditConfig, grants: Grants) -> list[str]:
    """Refuse an ask the caller did not grant; warn about a grant no model asks for (it widens nothing).

    Raises:
        ConfigError: ``models[i].arch_kwargs.<key> = true in <file> (model …): a config file cannot …``.
    """
    asked: set[str] = set()
    for i, m in enumerate(cfg.models):
        if not m.checkpoint:
            asked |= {k for k, v in model_trust(m, grants, i, cfg.source).items() if v}
    return [
        f"{flag} was given but no model's arch_kwargs asks for {key} = true: it allows nothing"
        for key, flag in TRUST_KEYS.items()
        if getattr(grants, key) and key not in asked
    ]
