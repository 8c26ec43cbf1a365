import os

import numpy as np
import pytest

import minigrad as mg

BACKENDS = ["numpy", "c"]


def _c_missing_reason() -> str | None:
    if "c" in mg.backend._BACKENDS:
        return None
    return f"C extension not built: {mg.backend._c_import_error}"


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test once per backend; the C one must exist unless MINIGRAD_ALLOW_NO_C=1."""
    name = request.param
    if name == "c" and _c_missing_reason():
        if os.environ.get("MINIGRAD_ALLOW_NO_C") == "1":
            pytest.skip(_c_missing_reason())
        pytest.fail(_c_missing_reason())
    previous = mg.get_backend()
    mg.set_backend(name)
    yield name
    mg.set_backend(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
