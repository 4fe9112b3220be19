"""What the browser tests share: Debian's chromium, its headless flags, the skip rule, the artifacts folder.

No browser is downloaded: Playwright drives ``/usr/bin/chromium`` (``make browser`` installs it). Without it
the browser tests are skipped with a reason, except in CI, where a missing browser must fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
NEEDS_CHROMIUM = pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("CI") != "true",
    reason="chromium is not installed (make browser, or apt-get install -y chromium)",
)
#: Headless, and nothing that reaches for the network (this machine's closed network refuses it loudly).
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def artifacts_dir() -> Path:
    """Where screenshots go: ``$ROBUSTXAI_ARTIFACTS`` or ``tests/artifacts`` (git-ignored), created."""
    out = Path(os.environ.get("ROBUSTXAI_ARTIFACTS") or Path(__file__).parent / "artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out
