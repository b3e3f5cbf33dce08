"""Save a fitted solver as .npy files plus JSON, and load it back."""

import json
import numbers

import numpy as np
import scipy.sparse as sp

from .backend import to_host
from .files import check_directory, require_files, write_atomic
from .validation import check_choice

FORMAT_VERSION = 1
FILES = ("user_factors.npy", "item_factors.npy", "user_items.npz", "params.json")


def _params_for_json(solver):
    params = solver.get_params()
    params["dtype"] = np.dtype(params["dtype"]).name
    seed = params["random_state"]
    # a Generator or RandomState cannot be written; the factors are saved anyway
    if not (seed is None or isinstance(seed, numbers.Integral)):
        params["random_state"] = None
    elif seed is not None:
        params["random_state"] = int(seed)
    return params


def save(solver, directory, overwrite=False):
    directory = check_directory(directory, FILES, overwrite)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format_version": FORMAT_VERSION,
        "params": _params_for_json(solver),
        "n_users": int(solver.user_factors_.shape[0]),
        "n_items": int(solver.item_factors_.shape[0]),
        "factors": int(solver.item_factors_.shape[1]),
        "dtype": solver.item_factors_.dtype.name,
    }
    # factors of a GPU model are copied to the host: both backends write the same files
    for name, factors in (("user_factors.npy", solver.user_factors_),
                          ("item_factors.npy", solver.item_factors_)):
        write_atomic(directory / name,
                     lambda file, factors=factors: np.save(file, to_host(factors),
                                                           allow_pickle=False))
    write_atomic(directory / "user_items.npz",
                  lambda file: sp.save_npz(file, solver.user_items_, compressed=True))
    # params.json last: a directory with it is a complete model
    write_atomic(directory / "params.json",
                  lambda file: file.write(json.dumps(metadata, indent=2).encode() + b"\n"))


def load(directory, backend=None):
    """A fitted ALSSolver from a directory written by `ALSSolver.save`.

    backend: "cpu" or "gpu" for the loaded model; None keeps the one it was fitted with
    (a model fitted on a GPU then needs CuPy and a device: pass backend="cpu" to use it
    without).
    """
    from .als import ALSSolver

    directory = require_files(directory, FILES, "is not a saved rgals model")
    try:
        metadata = json.loads((directory / "params.json").read_text())
        params = metadata["params"]
        expected = {"user_factors.npy": (metadata["n_users"], metadata["factors"]),
                    "item_factors.npy": (metadata["n_items"], metadata["factors"])}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{directory / 'params.json'} is not a valid rgals model description: "
                         f"{error}") from error
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory} was saved in format {metadata.get('format_version')}; "
                         f"this rgals reads format {FORMAT_VERSION}")
    if backend is not None:
        params = {**params, "backend": check_choice(backend, "backend", ("cpu", "gpu"))}
    solver = ALSSolver(**params)
    factors = {}
    for name, shape in expected.items():
        array = np.load(directory / name, allow_pickle=False)
        if array.shape != tuple(shape):
            raise ValueError(f"{directory / name} has shape {array.shape}; params.json says "
                             f"{tuple(shape)}")
        factors[name] = array
    user_items = sp.load_npz(directory / "user_items.npz").tocsr()
    if user_items.shape != (metadata["n_users"], metadata["n_items"]):
        raise ValueError(f"{directory / 'user_items.npz'} has shape {user_items.shape}; "
                         f"params.json says ({metadata['n_users']}, {metadata['n_items']})")
    solver.user_factors_ = factors["user_factors.npy"]
    solver.item_factors_ = factors["item_factors.npy"]
    solver.user_items_ = user_items
    return solver.to_gpu() if solver.backend == "gpu" else solver
