"""How well the plan prices the manipulation attack: measured CPU time of a call against its step price.

For each attacked method of a profile's ``[manipulation]`` block (at a quarter of its steps, on synthetic
64-px images and an untrained smallcnn), prints the CPU time of one call, the plan's step-priced prediction
(:mod:`robustxai.audit._timing_manip`) and the old pass-priced one (the attack's pass counts × plain gradient
passes). CPU time on both sides (``time.process_time``), so the load of a shared machine does not decide it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/plan_manipulation.py --profile paper
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

import robustxai.audit._timing as timing_module
import robustxai.audit._timing_manip as timing_manip
from robustxai.audit._config import load_config
from robustxai.audit._estimate import work_seconds
from robustxai.audit._passes import Work
from robustxai.audit._stages_manip import _attack
from robustxai.audit._timing import measure
from robustxai.audit._timing_manip import measure_steps, total_steps
from robustxai.data._base import stack_images
from robustxai.data._synthetic import SyntheticFracture
from robustxai.models import create_model


def main() -> None:
    """Print measured, step-priced and pass-priced seconds per attacked method."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--fraction", type=float, default=0.25, help="share of the configured steps run")
    args = parser.parse_args()
    timing_manip.time.perf_counter = time.process_time  # type: ignore[attr-defined]
    timing_module.time.perf_counter = time.process_time  # type: ignore[attr-defined]
    torch.manual_seed(0)
    mc = load_config(profile=args.profile).manipulation
    assert mc is not None, "the profile has no [manipulation] block"
    bs = mc.batch_size
    ds = SyntheticFracture(bs, size=64, fracture_rate=1.0, seed=5)
    x, y = stack_images([ds[i] for i in range(bs)])
    model = create_model("smallcnn", num_classes=2, class_names=["a", "b"], in_channels=1).eval()
    pass_time = measure(model, (1, 64, 64), bs, repeats=5)
    for method in mc.methods:
        full = _attack(mc, method)
        refine = int(full.selection.refine_iterations * args.fraction)
        attack = dataclasses.replace(
            full,
            iterations=max(int(full.iterations * args.fraction), 4),
            selection=dataclasses.replace(full.selection, refine_iterations=refine),
        )
        step = measure_steps(model, attack, x, y)
        predicted = step.seconds(total_steps(attack), bs)
        fwd, bwd = attack.passes(bs, 64, 64)
        old = work_seconds(Work(method, fwd, bwd, bs), {bs: pass_time})
        t = time.process_time()
        attack(model, x, y)
        took = time.process_time() - t
        print(
            f"{args.profile} {method:22s} steps {total_steps(attack):3d}: measured {took:6.2f} s, "
            f"step-priced {predicted:6.2f} s (×{took / predicted:.2f}), "
            f"pass-priced {old:6.2f} s (×{took / old:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
