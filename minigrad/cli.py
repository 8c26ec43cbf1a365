"""The ``minigrad`` command (also ``python -m minigrad``)."""

from __future__ import annotations

import argparse
import json
import sys


def _info(args: argparse.Namespace) -> int:
    import minigrad

    info = minigrad.backend_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .diagnostics.demos import DEMOS

    kwargs = {"seed": args.seed, "plot": args.plot}
    if args.steps is not None:
        kwargs["steps"] = args.steps
    DEMOS[args.name].run(**kwargs)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench_command import run

    return run(quick=args.quick, json_path=args.json, png_path=args.plot)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="minigrad", description="minigrad: autograd with C kernels"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="which backend runs, build flags, SIMD level, threads")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(run=_info)
    demo = commands.add_parser(
        "demo", help="reproduce a classic gradient experiment and print what it shows"
    )
    demo.add_argument(
        "name",
        choices=["vanishing", "exploding", "clipping", "batchnorm", "train"],
        help="vanishing: 20-layer MLP four ways; exploding: w=8 chains and a NaN blow-up; "
        "clipping: none/value/norm/AGC; batchnorm: deep sigmoid with and without BN; "
        "train: digits MLP with four optimizers",
    )
    demo.add_argument("--plot", metavar="PATH", help="also write a PNG figure here")
    demo.add_argument(
        "--steps",
        type=_positive_int,
        help="training steps (epochs for `train`); each demo has a default",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(run=_demo)
    bench = commands.add_parser(
        "bench", help="run bench/ (a source checkout's) and print the table"
    )
    bench.add_argument(
        "--quick", action="store_true", help="small sizes and short runs (< 1 minute)"
    )
    bench.add_argument("--json", metavar="PATH", help="also keep pytest-benchmark's JSON here")
    bench.add_argument("--plot", metavar="PATH", help="write a bar chart of the speedups (PNG)")
    bench.set_defaults(run=_bench)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
