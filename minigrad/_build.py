"""Builds ``minigrad._C``, the C kernels, with cffi in API mode.

setup.py names ``ffibuilder`` here; ``pip install -e .`` (or, to rebuild in
place while working on the C, ``python setup.py build_ext --inplace --force``)
then compiles csrc/*.c into the extension. The cdef is csrc/minigrad.h
itself, minus its preprocessor lines, so the header stays the one place the C
API is declared.

Compiler flags: ``-O3 -std=c11 -Wall -Wextra -fno-math-errno
-fno-trapping-math``, plus ``-fopenmp`` when a trial compile and link of a tiny
OpenMP program with the same compiler succeeds (the kernels build and run
single-threaded without it). No ``-ffast-math`` (NaN and Inf must survive) and
no ``-march=native`` (one build runs on any x86-64; the kernels pick AVX2 or
AVX-512 at run time).

``-fno-trapping-math`` (clang's default) changes no result: it only tells GCC
that nothing reads the floating-point exception flags, so it may evaluate both
sides of ``x > 0 ? x : slope * x`` and blend them. Without it GCC keeps that
a branch and leaves leaky_relu unvectorized below AVX-512 (whose masked
multiply raises no flags for the lanes it skips).

Environment:

- ``MINIGRAD_CFLAGS``: extra compiler flags, split like a shell would.
- ``MINIGRAD_SANITIZE=1``: build with AddressSanitizer and UBSan for tests.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shlex
import tempfile

import cffi

# Imported before distutils below so that `distutils` is setuptools' bundled
# copy, the one build_ext compiles with (Python 3.12 dropped the stdlib one).
import setuptools  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
HEADER = os.path.join(CSRC, "minigrad.h")

BASE_FLAGS = ["-O3", "-std=c11", "-Wall", "-Wextra", "-fno-math-errno", "-fno-trapping-math"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]

OPENMP_PROBE = """\
#include <omp.h>
int main(void)
{
    int n = 0;
#pragma omp parallel reduction(+ : n)
    n += omp_get_num_threads() > 0;
    return n > 0 ? 0 : 1;
}
"""


def _compiler():
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)  # honors CC, CFLAGS, LDSHARED like build_ext
    return compiler


@contextlib.contextmanager
def _quiet():
    """Silence a child compiler's output: a failed probe is an answer, not an error."""
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _has_openmp(compiler, extra_flags: list[str]) -> bool:
    """True if the compiler builds and links an OpenMP program with -fopenmp."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(OPENMP_PROBE)
        flags = [*extra_flags, "-fopenmp"]
        try:
            with _quiet():
                objects = compiler.compile([source], output_dir=tmp, extra_postargs=flags)
                compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=flags)
        except Exception:  # CompileError, LinkError, or no compiler at all
            return False
    return True


def _c_string(text: str) -> str:
    """``text`` as a C string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _cdef_text() -> str:
    with open(HEADER) as f:
        return "".join(line for line in f if not line.lstrip().startswith("#"))


def _make_builder() -> cffi.FFI:
    compiler = _compiler()
    compile_flags = list(BASE_FLAGS)
    link_flags: list[str] = []
    compile_flags += shlex.split(os.environ.get("MINIGRAD_CFLAGS", ""))
    if os.environ.get("MINIGRAD_SANITIZE") == "1":
        compile_flags += SANITIZE_FLAGS
        link_flags += SANITIZE_FLAGS
    if _has_openmp(compiler, compile_flags):
        compile_flags.append("-fopenmp")
        link_flags.append("-fopenmp")

    # What the extension reports as its build: the compiler with the flags
    # Python's own configuration adds, then ours, which come later and win.
    command = " ".join([*compiler.compiler_so, *compile_flags])
    prelude = (
        '#include "minigrad.h"\n\n'
        "const char *mg_build_flags(void)\n"
        "{\n"
        f"    return {_c_string(command)};\n"
        "}\n"
    )

    # setuptools builds from setup.py's directory, ROOT, and refuses absolute
    # source paths (they would leak into an sdist), so sources are relative.
    sources = [os.path.relpath(p, ROOT) for p in sorted(glob.glob(os.path.join(CSRC, "*.c")))]
    builder = cffi.FFI()
    builder.cdef(_cdef_text())
    builder.set_source(
        "minigrad._C",
        prelude,
        sources=sources,
        include_dirs=[CSRC],
        depends=[os.path.relpath(HEADER, ROOT)],
        extra_compile_args=compile_flags,
        extra_link_args=link_flags,
    )
    return builder


ffibuilder = _make_builder()
