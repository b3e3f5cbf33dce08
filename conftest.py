"""Test-run settings for the whole repository: the scripts' tests (bench/tests, which
also test research/) carry the `bench` marker, so that `pytest -m "not bench"` runs the
engine's tests alone; `bench` and `research` import as packages of the repository root."""

import sys
from pathlib import Path

import numpy as np
import pytest

# pytest put the repository root first on sys.path to import this file; last, the root
# still serves `import bench`, while `import rgals` finds the installed package (the one
# CI tests) before the source tree's rgals/
ROOT = Path(__file__).resolve().parent
while str(ROOT) in sys.path:
    sys.path.remove(str(ROOT))
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
