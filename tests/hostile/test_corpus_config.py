"""Hostile corpus: audit configs (TOML) and command-line arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _cases import PENDING_H1, Case, Workspace, params, run_case


def raw(text: str | bytes) -> Callable[[Workspace], list[str]]:
    """A config file of exactly ``text``."""

    def build(ws: Workspace) -> list[str]:
        data = text if isinstance(text, bytes) else text.encode()
        ws.config.write_bytes(data)
        return ["audit", str(ws.config), "--profile", "smoke", "--out", str(ws.out)]

    return build


def edit(change: Callable[[dict[str, Any], Workspace], None]) -> Callable[[Workspace], None]:
    """The workspace's config, changed by ``change`` (in place)."""

    def build(ws: Workspace) -> None:
        change(ws.cfg, ws)

    return build


def setkey(path: str, value: Any) -> Callable[[Workspace], None]:
    """The workspace's config with ``path`` (dotted; ``models.0.name``) set to ``value``."""

    def change(cfg: dict[str, Any], ws: Workspace) -> None:
        *parents, last = path.split(".")
        node: Any = cfg
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit(change)


def argv(*args: str) -> Callable[[Workspace], list[str]]:
    """Fixed CLI arguments; ``{out}``, ``{cfg}``, ``{data}``, ``{sentinel}``, ``{root}`` are filled in."""

    def build(ws: Workspace) -> list[str]:
        ws.write_config()
        names = {"out": ws.out, "cfg": ws.config, "data": ws.data, "sentinel": ws.sentinel, "root": ws.root}
        return [a.format(**{k: str(v) for k, v in names.items()}) for a in args]

    return build


def markup_path(ws: Workspace) -> list[str]:
    """A config path holding Rich markup (``[/x]``) that does not exist."""
    return ["audit", str(ws.root / "[/x]" / "c.toml"), "--profile", "smoke", "--out", str(ws.out)]


AUDIT = ("audit", "{cfg}", "--profile", "smoke", "--out", "{out}")

TOML_CASES = [
    Case("toml-syntax", raw("[data\nsize = 16\n"), "error", "is not valid TOML"),
    Case("toml-duplicate-key", raw("seed = 1\nseed = 2\n"), "error", "is not valid TOML"),
    Case("toml-unclosed-string", raw('name = "abc\n'), "error", "is not valid TOML"),
    Case("toml-binary-garbage", raw(b"\x00\x01\x02\xff\xfe"), "error", "c.toml"),
    Case("toml-not-utf8", raw('name = "caf\xe9"\n'.encode("cp1252")), "error", "c.toml"),
    Case("toml-empty-models", raw("models = []\n"), "error", "models"),
    Case("cfg-unknown-top-key", setkey("colour", 1), "error", "colour: unknown key"),
    Case("cfg-unknown-nested-key", setkey("data.n_tset", 3), "error", "data.n_tset: unknown key"),
    Case("cfg-wrong-type-seed", setkey("seed", "abc"), "error", "seed"),
    Case("cfg-wrong-type-batch", setkey("batch_size", [1]), "error", "batch_size"),
    Case("cfg-wrong-type-models", setkey("models", "m"), "error", "models"),
    Case("cfg-negative-eps", setkey("attacks.0.epsilons", [-0.1]), "error", "epsilons must be ≥ 0"),
    Case("cfg-nan-eps", setkey("attacks.0.epsilons", [float("nan")]), "error", "epsilons must be ≥ 0"),
    Case(
        "cfg-linf-eps-2",
        setkey("attacks.0.epsilons", [2.0]),
        "error",
        "budget(s) [2.0] ≥ 1",
    ),
    Case("cfg-inf-eps", setkey("attacks.0.epsilons", [float("inf")]), "error", "must be ≥ 0 and finite"),
    Case("cfg-huge-size", setkey("data.size", 10**9), "error", "data.size"),
    Case("cfg-huge-int", setkey("batch_size", 2**70), "error", "batch_size: integer out of the 64-bit range"),
    Case("cfg-huge-seed", setkey("seed", -(2**64)), "error", "seed: integer out of the 64-bit range"),
    Case("cfg-int64-batch", setkey("batch_size", 2**62), "ok"),
    Case("cfg-zero-epochs", setkey("training.epochs", 0), "error", "training.epochs"),
    Case("cfg-bad-name", setkey("name", "../../etc"), "error", "name"),
    Case(
        "cfg-unknown-arch", setkey("models.0", {"name": "m", "arch": "vit"}), "error", "unknown model 'vit'"
    ),
    Case("cfg-unknown-attack", setkey("attacks.0.name", "deepfool"), "error", "unknown attack 'deepfool'"),
    Case("cfg-unknown-explainer", setkey("explain.methods", ["shap"]), "error", "unknown explainer 'shap'"),
    Case(
        "cfg-unknown-arch-kwarg",
        setkey("models.0", {"name": "m", "arch": "smallcnn", "arch_kwargs": {"depth": 3}}),
        "error",
        "unknown keyword(s) depth",
    ),
    Case(
        "cfg-duplicate-model",
        setkey("models", [{"name": "m", "arch": "smallcnn"}, {"name": "m", "arch": "smallcnn"}]),
        "error",
        "model names must be unique",
    ),
    Case("cfg-attack-param-typo", setkey("attacks.0.params", {"stepz": 2}), "error", "stepz"),
    Case("cfg-executor-kind", setkey("executor.kind", "mpi"), "error", "executor.kind"),
    Case("cfg-channels-last-yes", setkey("models.0.channels_last", "yes"), "error", "models.0.channels_last"),
    Case("cfg-channels-last-one", setkey("models.0.channels_last", 1), "error", "models.0.channels_last"),
    Case("cfg-model-batch-string", setkey("models.0.batch_size", "8"), "error", "models.0.batch_size"),
    Case("cfg-model-batch-float", setkey("models.0.batch_size", 8.0), "error", "models.0.batch_size"),
    Case("cfg-data-path-missing", setkey("data.path", "/nonexistent/robustxai"), "error", "not found"),
    Case(
        "cfg-checkpoint-missing",
        setkey("models.0.checkpoint", "/nonexistent/ckpt"),
        "error",
        "no saved model",
    ),
    Case(
        "cfg-annotation-format",
        edit(lambda c, ws: c["data"].update(annotations="annotations.json", annotation_format="dicomseg")),
        "error",
        "dicomseg",
    ),
]

CLI_CASES = [
    Case("cli-missing-config", argv("audit", "{root}/missing.toml", "--out", "{out}"), "error", "not found"),
    Case("cli-config-is-dir", argv("audit", "{data}", "--out", "{out}"), "error", "config file not found"),
    Case(
        "cli-unknown-profile",
        argv("audit", "--profile", "huge", "--out", "{out}"),
        "error",
        "unknown profile",
    ),
    Case("cli-unknown-option", argv(*AUDIT, "--bogus"), "usage", "No such option"),
    Case(
        "cli-bad-int",
        argv("data", "synth", "--out", "{out}", "--n", "many"),
        "usage",
        "Invalid value for '--n'",
    ),
    Case("cli-executor", argv(*AUDIT, "--executor", "mpi"), "error", "executor.kind"),
    Case("cli-out-is-file", argv(*AUDIT[:-1], "{sentinel}/notes.txt"), "error", "is not a directory"),
    Case("cli-out-under-file", argv(*AUDIT[:-1], "{sentinel}/notes.txt/run"), "error", "notes.txt"),
    Case(
        "cli-out-foreign-dir",
        argv(*AUDIT[:-1], "{sentinel}/figures"),
        "error",
        "holds no earlier robustxai run",
    ),
    Case(
        "cli-out-user-folder-with-config-toml",
        argv(*AUDIT[:-1], "{sentinel}"),
        "error",
        "holds no earlier robustxai run",
        pending=PENDING_H1,
    ),
    Case("cli-report-missing", argv("report", "{root}/nowhere"), "error", "no results.sqlite"),
    Case("cli-export-format", argv("export", "{root}/nowhere", "--format", "xlsx"), "error", "xlsx"),
    Case("cli-train-training", argv("train", "--out", "{out}", "--training", "magic"), "error", "--training"),
    Case(
        "cli-train-data-missing",
        argv("train", "--out", "{out}", "--data", "{root}/nope"),
        "error",
        "not found",
    ),
    Case(
        "cli-train-model-option",
        argv("train", "--out", "{out}", "--model", "torchvision:resnet18", "--model-option", "x"),
        "error",
        "KEY=VALUE",
    ),
    Case(
        "cli-synth-fraction",
        argv("data", "synth", "--out", "{out}", "--test-fraction", "2"),
        "error",
        "(0, 1)",
    ),
    Case("cli-list-kind", argv("list", "gizmos"), "error", "unknown kind"),
    Case("cli-markup-in-path", markup_path, "error", "[/x]", pending=PENDING_H1),
    Case(
        "cli-markup-in-value",
        argv("audit", "--profile", "[nan]", "--out", "{out}"),
        "error",
        "'[nan]'",
        PENDING_H1,
    ),
]


@pytest.mark.parametrize("case", params(TOML_CASES + CLI_CASES))
def test_config_and_cli(case: Case, ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    run_case(case, ws, caplog)
