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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="minigrad", description="minigrad: autograd with C kernels"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="which backend runs, build flags, SIMD level, threads")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(run=_info)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
