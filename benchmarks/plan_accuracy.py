"""How well ``robustxai plan`` predicts an audit: predicted vs measured seconds per stage.

Runs the plan (timing passes, cached) and then the audit of the same configuration into a fresh run
directory, and prints per stage the predicted seconds, the measured seconds (from the progress tasks' start
and end), and their ratio. Meant for an idle machine (the issue's target: the whole audit within ±25 %);
on a loaded one, print ``uptime`` beside the numbers.

    .venv/bin/python benchmarks/plan_accuracy.py [CONFIG] [--profile smoke] [--out DIR] [--cache-dir DIR]

Pass ``--cache-dir`` to a fresh folder to include training in both columns; with the default cache, models
that are cached cost nothing in either.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from robustxai._pipeline import run_audit
from robustxai._runtime import keep_freed_memory
from robustxai.audit._config import load_config
from robustxai.audit._estimate import estimate_audit
from robustxai.audit._estimate_text import plan_lines
from robustxai.audit._progress import ProgressTracker

STAGE_OF_TASK = {"training": "training", "attack": "attack", "explain": "explain", "manipulate": "manipulate"}


def measured_stages(tracker: ProgressTracker) -> dict[str, float]:
    """Seconds per stage from the finished progress tasks (``attack m (stage …)``, ``training …``, …)."""
    out: dict[str, float] = defaultdict(float)
    for task in tracker.tasks:
        first = task.description.split(" ", 1)[0]
        stage = STAGE_OF_TASK.get(first, first)
        if task.finished is not None:
            out[stage] += task.finished - task.started
    return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", nargs="?", default=None)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    keep_freed_memory()
    overrides = {"cache_dir": args.cache_dir} if args.cache_dir else {}
    cfg = load_config(args.config, profile=args.profile, **overrides)
    t0 = time.perf_counter()
    est = estimate_audit(cfg)
    plan_s = time.perf_counter() - t0
    print("\n".join(plan_lines(est)))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="plan-accuracy-")) / "run"
    tracker = ProgressTracker()
    tracker.predicted = est.unit_seconds
    result = run_audit(est.cfg, out, progress=tracker, fresh=True)
    measured = measured_stages(tracker)
    print(f"\nload average {os.getloadavg()[0]:.2f}; plan took {plan_s:.1f} s")
    print(f"{'stage':<12}{'predicted s':>12}{'measured s':>12}{'ratio':>8}")
    for stage in est.stages:
        got = measured.get(stage.name, 0.0)
        ratio = f"{got / stage.seconds:8.2f}" if stage.seconds > 0 else f"{'—':>8}"
        print(f"{stage.name:<12}{stage.seconds:12.1f}{got:12.1f}{ratio}")
    print(f"{'total':<12}{est.seconds:12.1f}{result.seconds:12.1f}{result.seconds / est.seconds:8.2f}")
    print("(measured total: the whole audit, data and model loading included)")


if __name__ == "__main__":
    main()
