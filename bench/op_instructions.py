"""Instructions an op's API step spends outside the C kernels, counted by valgrind.

    python bench/op_instructions.py [relu leaky_relu ...]

Timing Python's share of a step moves by several percent from one run to the
next on this machine; an instruction count does not, so this is the tool for
telling whether a change to the op path made it leaner. Every C activation
kernel is replaced by a Python function that returns at once, and the step of
bench_activations_api.py runs 200 and 2,200 times, each in a fresh process
under ``valgrind --tool=cachegrind``; the difference over 2,000 is one step's
cost in everything but the kernels: the interpreter running minigrad's Python
and the C of NumPy and cffi on the way. Threads are pinned to one (OpenBLAS's
idle workers spin, and valgrind would count them) and the hash seed is fixed,
so two runs of one tree agree to within a few instructions.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = (200, 2200)


def _stubbed_step(name: str):
    """The API step of ``name`` with every activation kernel a no-op."""
    sys.path.insert(0, str(HERE))
    import bench_activations_api as acts

    import minigrad as mg
    from minigrad.backend import c as cbackend

    mg.set_backend("c")

    def no_op(*args):
        return 0

    for dtype, k in list(cbackend._KERNELS.items()):
        cbackend._KERNELS[dtype] = k._replace(**{f: no_op for f in k._fields if f != "ctype"})
    x, g = acts._inputs((128, 512))
    return acts._step("c", name, x, g)


def _run_steps(name: str, steps: int) -> None:
    step = _stubbed_step(name)
    for _ in range(steps):
        step()


def _instructions(name: str, steps: int) -> int:
    env = dict(
        os.environ,
        PYTHONHASHSEED="0",
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        MINIGRAD_NUM_THREADS="1",
    )
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--inner",
        name,
        str(steps),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise RuntimeError(f"valgrind printed no instruction count:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["relu", "leaky_relu", "sigmoid"])
    parser.add_argument("--inner", nargs=2, metavar=("NAME", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        _run_steps(args.inner[0], int(args.inner[1]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("op_instructions.py needs valgrind (apt install valgrind)")
    print("| op | instructions per step outside the kernels |")
    print("|---|---:|")
    for name in args.names:
        few, many = (_instructions(name, n) for n in STEPS)
        print(f"| {name} | {(many - few) // (STEPS[1] - STEPS[0]):,} |")


if __name__ == "__main__":
    main()
