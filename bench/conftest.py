"""Benchmarks: ``pytest bench/ --benchmark-only``.

The files are named bench_*.py so that a plain ``pytest`` (testpaths =
tests) never runs them; this hook makes pytest collect them when bench/ is
asked for explicitly.
"""

from __future__ import annotations

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
