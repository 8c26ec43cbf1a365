"""Benchmarks: ``pytest bench/ --benchmark-only``.

The files are named bench_*.py so that a plain ``pytest`` (testpaths =
tests) never runs them; this hook makes pytest collect them when bench/ is
asked for explicitly.
"""

from __future__ import annotations

import time

import pytest


def pytest_collect_file(file_path, parent):
    # a file named on the command line is collected by pytest itself already
    if parent.session.isinitpath(file_path):
        return None
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "large: a big size, left out by `minigrad bench --quick`")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    # The C kernels go single-threaded for a while when a worker thread starts
    # late (another process, or another library's spinning threads, holds the
    # cores); a run with such pauses measured a busy machine.
    import minigrad as mg

    output_json["minigrad"] = {
        "thread_backoffs": mg.backend_info().get("thread_backoffs"),
    }


@pytest.fixture(autouse=True)
def _idle_cores():
    """Each benchmark starts on idle cores. The previous one's library (OpenBLAS,
    PyTorch's OpenMP) keeps its threads spinning for a while after its last call,
    and minigrad's kernels would back off from those busy cores; after a short
    sleep those threads are asleep, and setting the thread count again clears any
    pause, so every library is measured on a quiet machine."""
    import minigrad as mg

    time.sleep(0.2)
    mg.set_num_threads(mg.get_num_threads())
    yield
