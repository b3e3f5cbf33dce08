"""Test-run settings for the whole repository: the scripts' tests (bench/tests, which
also test research/) carry the `bench` marker, so that `pytest -m "not bench"` runs the
engine's tests alone; `bench` and `research` import as packages of the repository root,
which is appended to sys.path (an installed rgals stays the one imported)."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))


def pytest_collection_modifyitems(items):
    scripts = ROOT / "bench"
    for item in items:
        if scripts in Path(item.fspath).parents:
            item.add_marker(pytest.mark.bench)


@pytest.fixture(params=[0, 1, 2])
def rng(request):
    """Three fresh random streams, one per case (every test that draws its inputs)."""
    return np.random.default_rng(1000 + request.param)
