"""Content-addressed cache for generated data sets and trained models.

Entries are keyed by a hash of everything that determines them (settings, seed, format version), so a second
audit with the same settings reuses them and a changed setting can never reuse a stale entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_VERSION = "2"  # bump when training or data generation changes what a cached entry holds


def cache_root(configured: str | None) -> Path:
    """The cache directory: the config's, else ``$ROBUSTXAI_CACHE``, else ``~/.cache/robustxai``."""
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get("ROBUSTXAI_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "robustxai"


def key_of(*parts: object) -> str:
    """A short stable hash of JSON-serialisable parts."""
    blob = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def is_complete(directory: Path) -> bool:
    """Whether a cache entry was fully written (its completion marker exists)."""
    return (directory / ".complete").is_file()


def mark_complete(directory: Path) -> None:
    """Write the completion marker of a cache entry, last, so a crash never leaves a half entry in use."""
    (directory / ".complete").write_text("ok\n")
