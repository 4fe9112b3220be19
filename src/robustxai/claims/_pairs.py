"""Which model is the counterpart of which: the rule the attention and adversarial-training claims use.

A run says it through its config (``meta.config.models``, else the ``models`` table), never through names:

- An **attention model** is a model whose ``arch`` contains ``"attention"`` (``smallcnn-attention``).
  Its **standard counterpart** is

  1. the model named in its ``init_from``, when that model's arch has no attention and it was trained the
     same way (``training``: standard with standard, pgd with pgd, at the same training ε) — the attention
     head was put on that model's backbone, so the pair differs by the head alone; else
  2. the one model trained the same way at the same training ε (the model's ``eps``, else the run's
     ``training.eps``; within 1e-9) whose arch is the attention arch without ``attention`` (and the
     ``-``/``_`` before it; the ``init_from`` model's arch when it names one): ``smallcnn-attention`` →
     ``smallcnn``. None or several such models: no pair.

- An **adversarially trained model** is a model with ``training = "pgd"`` and no attention. Its standard
  counterpart is its ``init_from`` when that one has ``training = "standard"`` and the same arch, else the
  one ``training = "standard"`` model of the same arch.

A model without a counterpart is reported, with the reason, instead of being paired by a guess.
"""

from __future__ import annotations

import re

from robustxai.claims._data import model_configs, model_names
from robustxai.results._run import RunData

__all__ = ["adversarial_pairs", "attention_pairs", "is_attention"]

ATTENTION = "attention"
_STRIP = re.compile(r"[-_]?attention")


def is_attention(arch: object) -> bool:
    """Whether an arch name is an attention variant (it contains ``"attention"``)."""
    return ATTENTION in str(arch or "").lower()


def _same_eps(a: object, b: object) -> bool:
    """Whether two resolved training budgets agree (within 1e-9); an unknown one agrees with any."""
    if not isinstance(a, float) or not isinstance(b, float):
        return True
    return abs(a - b) <= 1e-9


def _counterpart(
    name: str,
    configs: dict[str, dict[str, object]],
    models: list[str],
    arch: str,
    training: str,
    eps: object,
) -> tuple[str | None, str]:
    """The counterpart of ``name``: its ``init_from``, else the one model of that arch, training, ε."""
    cfg = configs[name]
    parent = cfg.get("init_from")
    if parent in configs and parent in models:
        p = configs[str(parent)]
        if (
            not is_attention(p.get("arch"))
            and p.get("training") == training
            and p.get("arch") == arch
            and _same_eps(p.get("eps"), eps)
        ):
            return str(parent), ""
    same = [
        m for m in models
        if m != name and configs[m].get("arch") == arch and configs[m].get("training") == training
        and _same_eps(configs[m].get("eps"), eps)
    ]  # fmt: skip
    if len(same) == 1:
        return same[0], ""
    if not same:
        return None, f"{name}: no model of arch {arch!r} trained {training!r} to compare with"
    return None, f"{name}: several candidate counterparts ({', '.join(same)}) and no init_from naming one"


def attention_pairs(run: RunData) -> tuple[list[tuple[str, str]], list[str]]:
    """``(attention model, standard counterpart)`` pairs of the run, and why any attention model has none."""
    configs = model_configs(run)
    models = [m for m in model_names(run) if m in configs]
    pairs: list[tuple[str, str]] = []
    notes: list[str] = []
    for name in models:
        arch = str(configs[name].get("arch") or "")
        if not is_attention(arch):
            continue
        training = str(configs[name].get("training") or "")
        parent = configs[name].get("init_from")
        base_arch = _STRIP.sub("", arch, count=1)
        if parent in configs and not is_attention(configs[str(parent)].get("arch")):
            base_arch = str(configs[str(parent)].get("arch"))  # the head sits on the parent's backbone
        other, why = _counterpart(name, configs, models, base_arch, training, configs[name].get("eps"))
        if other is None:
            notes.append(why)
        else:
            pairs.append((name, other))
    return pairs, notes


def adversarial_pairs(run: RunData) -> tuple[list[tuple[str, str]], list[str]]:
    """``(adversarially trained model, standard counterpart)`` pairs, and why a pgd model has none."""
    configs = model_configs(run)
    models = [m for m in model_names(run) if m in configs]
    pairs: list[tuple[str, str]] = []
    notes: list[str] = []
    for name in models:
        cfg = configs[name]
        if cfg.get("training") != "pgd" or is_attention(cfg.get("arch")):
            continue
        other, why = _counterpart(name, configs, models, str(cfg.get("arch") or ""), "standard", 0.0)
        if other is None:
            notes.append(why)
        else:
            pairs.append((name, other))
    return pairs, notes
