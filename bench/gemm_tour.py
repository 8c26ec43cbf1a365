"""A float32 matrix product from a naive loop to minigrad's GEMM: the numbers of docs/04.

    python bench/gemm_tour.py [--repeat N] [--clock-ghz G] [--flop-per-cycle F]

Every stage runs in a child process of its own, because minigrad picks its
SIMD path once per process (MINIGRAD_FORCE_ISA lowers it) and OpenBLAS reads
OPENBLAS_NUM_THREADS when NumPy is imported. Each time is the median of
--repeat timed batches (a batch is one call, or as many calls as fill about
20 ms), after one untimed call.

The naive loops are compiled here with cffi, with the flags minigrad's own C
gets (-O3, no -march), into a temporary directory.

Peak = clock x FLOP per cycle x threads. The clock is measured (a chain of
dependent integer adds, one per cycle, timed against this thread's CPU
time); the FLOP per cycle defaults to 64, the float32 rate bench/RESULTS.md
measured on a Zen 5 core (two 512-bit FMA pipes). Give your CPU's with
--flop-per-cycle. Every row's % is of the machine's peak at that row's thread
count, whatever instruction set the row uses.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

SHAPES = [(512, 512, 512), (128, 784, 512)]  # (m, k, n): op(A) is m x k, op(B) is k x n

NAIVE_CDEF = """
void naive_ijp(size_t m, size_t n, size_t k, const float *a, const float *b, float *c);
void naive_ipj(size_t m, size_t n, size_t k, const float *a, const float *b, float *c);
uint64_t add_chain(uint64_t n);
"""

NAIVE_SOURCE = r"""
#include <stddef.h>
#include <stdint.h>

/* The textbook loop: c[i][j] is a dot product of row i of A with column j of
 * B. The column walk jumps n floats per step, so each multiply-add touches a
 * new cache line of B; and a float sum cannot be vectorized without
 * reordering it, which the compiler may not do. */
void naive_ijp(size_t m, size_t n, size_t k, const float *a, const float *b, float *c)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float s = 0;
            for (size_t p = 0; p < k; p++)
                s += a[i * k + p] * b[p * n + j];
            c[i * n + j] = s;
        }
}

/* The same sums with the two inner loops swapped: row i of C gets a[i][p]
 * times row p of B, for each p. Every access is now in order and the inner
 * loop vectorizes, but all of B still streams in once per row of C. */
void naive_ipj(size_t m, size_t n, size_t k, const float *a, const float *b, float *c)
{
    for (size_t i = 0; i < m; i++) {
        float *ci = c + i * n;
        for (size_t j = 0; j < n; j++)
            ci[j] = 0;
        for (size_t p = 0; p < k; p++) {
            float aip = a[i * k + p];
            const float *bp = b + p * n;
            for (size_t j = 0; j < n; j++)
                ci[j] += aip * bp[j];
        }
    }
}

/* 8 n dependent adds: one per cycle, so cycles / CPU time is the clock.
 * The asm keeps the compiler from folding the chain into one add. */
uint64_t add_chain(uint64_t n)
{
    uint64_t x = 0;
#if defined(__GNUC__) && defined(__x86_64__)
    for (uint64_t i = 0; i < n; i++)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                         "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                         : "+r"(x));
#else
    (void)n;
#endif
    return x;
}
"""

# (label, kind, ISA forced, threads)
STAGES = [
    ("naive loop i-j-p (C, -O3)", "naive_ijp", None, 1),
    ("naive loop i-p-j (C, -O3)", "naive_ipj", None, 1),
    ("minigrad, generic 4x8 kernel", "minigrad", "generic", 1),
    ("minigrad, AVX2 6x16 kernel", "minigrad", "avx2", 1),
    ("minigrad, AVX-512 8x32 kernel", "minigrad", "avx512", 1),
    ("minigrad, AVX-512 8x32 kernel", "minigrad", "avx512", 2),
    ("NumPy np.matmul (OpenBLAS)", "numpy", None, 1),
    ("NumPy np.matmul (OpenBLAS)", "numpy", None, 2),
]

# Linear's forward, y = x @ W.T + b with x 128 x 784 and W 512 x 784, four ways.
LINEAR_VARIANTS = [
    ("x @ Wt, W stored transposed (no trans flag)", "plain"),
    ("x @ W.T, W read in place (trans_b)", "trans_b"),
    ("x @ W.T, then y += b (a second pass over y)", "bias_after"),
    ("x @ W.T + b, bias in the epilogue (what Linear runs)", "bias_fused"),
]


def build_naive(tmpdir: str):
    """Compile the naive loops into tmpdir and return the module's lib."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(NAIVE_CDEF)
    ffi.set_source("_gemm_tour_naive", NAIVE_SOURCE, extra_compile_args=["-O3", "-std=c11"])
    return load_naive(ffi.compile(tmpdir=tmpdir))


def load_naive(path: str):
    spec = importlib.util.spec_from_file_location("_gemm_tour_naive", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def median_seconds(fn, repeat: int) -> float:
    fn()  # untimed: page faults, OpenMP's threads starting, caches warm
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    number = max(1, int(0.02 / max(once, 1e-9)))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


def operands(m: int, k: int, n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    return a, b


def child_stage(kind: str, naive_path: str, repeat: int) -> dict:
    """Time one stage on every shape; runs in its own process."""
    import numpy as np

    result = {"times": []}
    if kind.startswith("naive"):
        module = load_naive(naive_path)
        loop = getattr(module.lib, kind)
    elif kind == "minigrad":
        from minigrad.backend.c import CBackend, ffi, lib

        gemm = CBackend().gemm
        result["isa"] = ffi.string(lib.mg_simd_name()).decode()
    for m, k, n in SHAPES:
        a, b = operands(m, k, n)
        if kind.startswith("naive"):
            c = np.empty((m, n), dtype=np.float32)
            ffi = module.ffi
            pa, pb, pc = (ffi.from_buffer("float[]", x) for x in (a, b, c))
            t = median_seconds(lambda: loop(m, n, k, pa, pb, pc), repeat)  # noqa: B023
            # the loop is the thing measured: check that it computes the product
            if not np.allclose(c, a @ b, rtol=1e-3, atol=1e-3):
                raise RuntimeError(f"{kind} is wrong on {m}x{k}x{n}")
        elif kind == "minigrad":
            t = median_seconds(lambda: gemm(a, b), repeat)  # noqa: B023
        else:
            t = median_seconds(lambda: np.matmul(a, b), repeat)  # noqa: B023
        result["times"].append(t)
    return result


def child_linear(repeat: int) -> dict:
    """Linear's forward on the 784 -> 512 layer, batch 128, four ways."""
    import numpy as np

    from minigrad.backend.c import CBackend, ffi, lib

    gemm = CBackend().gemm
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 784)).astype(np.float32)
    w = rng.standard_normal((512, 784)).astype(np.float32)
    wt = np.ascontiguousarray(w.T)
    bias = rng.standard_normal(512).astype(np.float32)

    def bias_after():
        y = gemm(x, w, trans_b=True)
        y += bias
        return y

    calls = {
        "plain": lambda: gemm(x, wt),
        "trans_b": lambda: gemm(x, w, trans_b=True),
        "bias_after": bias_after,
        "bias_fused": lambda: gemm(x, w, trans_b=True, bias=bias),
    }
    times = {name: median_seconds(fn, repeat) for name, fn in calls.items()}
    return {"isa": ffi.string(lib.mg_simd_name()).decode(), "times": times}


def run_child(args: list[str], env_extra: dict) -> dict:
    env = {**os.environ, **env_extra}
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout)


def stage_env(kind: str, isa: str | None, threads: int) -> dict:
    # Every library in the child gets the stage's thread count, so that no
    # idle pool of one spins on the core the other is measured on.
    env = {
        "MINIGRAD_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
    }
    if isa is not None:
        env["MINIGRAD_FORCE_ISA"] = isa
    return env


def measure_clock_ghz(lib) -> float:
    if lib.add_chain(1) != 8:  # not x86-64 with GCC: the chain is not there
        return 0.0
    n = 2_000_000  # 16 M cycles, about 4 ms
    samples = []
    for _ in range(15):
        t0 = time.thread_time()
        lib.add_chain(n)
        samples.append(time.thread_time() - t0)
    return 8 * n / statistics.median(samples) / 1e9


def three_digits(x: float) -> str:
    """x to three significant digits, trailing zeros kept: 155, 18.3, 0.450."""
    decimals = 0 if x >= 100 else 1 if x >= 10 else 2 if x >= 1 else 3
    return f"{x:.{decimals}f}"


def cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=21, help="timed batches per median")
    parser.add_argument("--clock-ghz", type=float, help="skip measuring the clock, use this")
    parser.add_argument("--flop-per-cycle", type=float, default=64.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--naive", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "linear":
        print(json.dumps(child_linear(args.repeat)))
        return
    if args.child is not None:
        print(json.dumps(child_stage(args.child, args.naive, args.repeat)))
        return

    load_before = load()
    with tempfile.TemporaryDirectory() as tmpdir:
        naive = build_naive(tmpdir)
        clock = args.clock_ghz or measure_clock_ghz(naive.lib)
        if clock <= 0:
            sys.exit("could not measure the clock on this CPU; pass --clock-ghz")
        rows = []
        for label, kind, isa, threads in STAGES:
            child = ["--child", kind, "--naive", naive.__file__, "--repeat", str(args.repeat)]
            res = run_child(child, stage_env(kind, isa, threads))
            if isa is not None and res["isa"] != isa:
                rows.append((label, threads, None))  # the CPU lacks this path
            else:
                rows.append((label, threads, res["times"]))
        linear = run_child(["--child", "linear", "--repeat", str(args.repeat)],
                           stage_env("minigrad", None, 1))  # fmt: skip

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    per_core = clock * args.flop_per_cycle
    print(f"{when}; {cpu_name()}, {os.cpu_count()} logical CPUs; "
          f"load average {load_before} before, {load()} after")  # fmt: skip
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; "
          f"clock {clock:.2f} GHz x {args.flop_per_cycle:g} FLOP/cycle = "
          f"peak {per_core:.0f} GFLOPS per core")  # fmt: skip
    print(f"float32, median of {args.repeat} timed batches per cell\n")

    header = "| stage | threads |"
    rule = "|---|---:|"
    for m, k, n in SHAPES:
        header += f" {m}x{k}x{n} ms | GFLOPS | % of peak |"
        rule += "---:|---:|---:|"
    print(header)
    print(rule)
    for label, threads, times in rows:
        line = f"| {label} | {threads} |"
        for (m, k, n), t in zip(SHAPES, times or [None] * len(SHAPES), strict=True):
            if t is None:
                line += " n/a | n/a | n/a |"
                continue
            gflops = 2 * m * n * k / t / 1e9
            pct = 100 * gflops / (per_core * threads)
            line += f" {three_digits(t * 1e3)} | {three_digits(gflops)} | {pct:.0f}% |"
        print(line)
    one_thread = {label: times for label, threads, times in rows if threads == 1}
    busy = [
        label
        for label, threads, times in rows
        if threads == 2 and times and one_thread.get(label) and times[0] > one_thread[label][0]
    ]
    if busy:
        # A parallel region waits for its slowest thread; with another job on
        # the second core that thread gets a time slice now and then.
        print("\nnote: a 2-thread row is slower than 1 thread: the machine was busy; run again")

    print(f"\nLinear forward, 128x784 by 512x784, {linear['isa']}, 1 thread\n")
    print("| way | us | GFLOPS |")
    print("|---|---:|---:|")
    for label, name in LINEAR_VARIANTS:
        t = linear["times"][name]
        print(f"| {label} | {t * 1e6:.0f} | {2 * 128 * 784 * 512 / t / 1e9:.0f} |")


if __name__ == "__main__":
    main()
