"""rgals: ALS matrix factorization for ranking with second-order softmax losses."""


def _map_checkout_kernels():
    """Make `rgals.kernels` importable from a source checkout, where it lives in ../kernels.

    Installed packages have rgals/kernels (setuptools package-dir); this only matters when
    rgals is imported straight from the repository root.
    """
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.join(os.path.dirname(here), "kernels")
    if os.path.isdir(os.path.join(here, "kernels")) or "rgals.kernels" in sys.modules or \
            not os.path.isfile(os.path.join(checkout, "cpu.py")):
        return
    spec = importlib.util.spec_from_file_location(
        "rgals.kernels", os.path.join(checkout, "__init__.py"),
        submodule_search_locations=[checkout])
    module = importlib.util.module_from_spec(spec)
    sys.modules["rgals.kernels"] = module
    spec.loader.exec_module(module)


_map_checkout_kernels()

__version__ = "0.1.0"

from . import data, metrics  # noqa: E402
from . import losses  # noqa: E402
from .als import ALSSolver, FitInputs  # noqa: E402
from .losses import LOSSES  # noqa: E402
from .monitor import ConvergenceMonitor  # noqa: E402
from .recommender import NotFittedError, Recommender  # noqa: E402
from .training import train  # noqa: E402
from .tuning import TuneResult, tune  # noqa: E402

load = ALSSolver.load

__all__ = ["ALSSolver", "ConvergenceMonitor", "FitInputs", "NotFittedError", "Recommender",
           "load", "LOSSES", "data", "losses", "metrics", "train", "tune", "TuneResult",
           "__version__"]
