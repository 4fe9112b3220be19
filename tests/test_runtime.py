"""keep_freed_memory: glibc keeps freed tensor memory for reuse, so repeated passes take no page faults."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

import robustxai.cli as cli
from robustxai import runtime

# A child process (the setting is process-wide) runs forward+backward passes of the built-in CNN on 32 images,
# three untimed, then five, and prints whether the setting took effect and the page faults of the five.
CHILD = textwrap.dedent(
    """
    import resource, sys, torch
    import robustxai as rx
    from robustxai.runtime import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "keep" else False
    torch.manual_seed(0)
    model = rx.create_model("smallcnn").eval()
    x = torch.rand(32, 1, 64, 64, requires_grad=True)
    def step():
        torch.autograd.grad(model(x)[:, 0].sum(), x)
    for _ in range(3):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], check=True, capture_output=True, text=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


def _glibc() -> bool:
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults() -> None:
    applied, kept = _faults("keep")
    _, system = _faults("system")
    assert applied == "True"
    assert system > 5 * 1000  # glibc as it is: thousands of fresh pages every pass (what the setting removes)
    assert kept < system / 10


def test_idempotent_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(runtime, "_applied", None)
    monkeypatch.setattr(runtime, "_apply", lambda: calls.append(1) or True)
    assert runtime.keep_freed_memory() is True
    assert runtime.keep_freed_memory() is True
    assert calls == [1]


def test_off_linux_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.sys, "platform", "darwin")
    assert runtime._apply() is False


def test_every_cli_command_applies_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1) or True)
    result = CliRunner().invoke(cli.app, ["list"])
    assert result.exit_code == 0, result.output
    assert calls == [1]
