"""Peak memory of a 1,000-step training loop, each library in its own process.

    python bench/memory_loop.py [--steps 1000] [--batch 32 128]

Runs the training step of bench_train.py (784-512-512-10 MLP with BatchNorm1d
and ReLU, cross-entropy, clip_grad_norm_, AdamW) for minigrad's C and NumPy
backends and for PyTorch when installed, and prints the peak resident set size
(``ru_maxrss``) after importing, after 10% of the steps and after all of them:
a loop whose memory is flat shows the same figure for the last two.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _child(impl: str, batch: int, steps: int) -> None:
    import resource

    def peak_mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    sys.path.insert(0, HERE)
    import minigrad as mg

    if impl == "torch":
        import torch  # noqa: F401  (imported before measuring, like minigrad)
    imported = peak_mib()
    from bench_train import _minigrad_step, _torch_step

    if impl == "torch":
        step = _torch_step(batch)
    else:
        mg.set_backend(impl)
        step = _minigrad_step(batch)
    for _ in range(steps // 10):
        step()
    early = peak_mib()
    for _ in range(steps - steps // 10):
        step()
    print(json.dumps({"imported": imported, "early": early, "end": peak_mib()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), args.steps)
        return
    impls = ["c", "numpy"]
    try:
        import importlib.util

        if importlib.util.find_spec("torch") is not None:
            impls.append("torch")
    except ValueError:
        pass
    print(
        f"| library | batch | after import (MiB) | after {args.steps // 10} steps | "
        f"after {args.steps} steps |"
    )
    print("|---|---:|---:|---:|---:|")
    for batch in args.batch:
        for impl in impls:
            out = subprocess.run(
                [sys.executable, __file__, "--steps", str(args.steps), "--child", impl, str(batch)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            name = {"c": "minigrad (C)", "numpy": "minigrad (NumPy)", "torch": "PyTorch"}[impl]
            print(f"| {name} | {batch} | {r['imported']:.0f} | {r['early']:.0f} | {r['end']:.0f} |")


if __name__ == "__main__":
    main()
