"""Save a fitted solver as .npy files plus JSON, and read them back (ALSSolver.load)."""

import json
import numbers
import zipfile

import numpy as np
import scipy.sparse as sp

from .backend import to_host
from .files import prepare_directory, require_files, write_together
from .losses import Loss, make_loss

FORMAT_VERSION = 2  # 2: the fitted loss in params.json
READABLE_VERSIONS = (1, 2)
FILES = ("user_factors.npy", "item_factors.npy", "user_items.npz", "params.json")
FACTOR_DTYPES = ("float32", "float64")


def _params_for_json(solver):
    params = solver.get_params()
    params["dtype"] = np.dtype(params["dtype"]).name
    if isinstance(params["loss"], Loss):
        params["loss"] = params["loss"].to_dict()
    seed = params["random_state"]
    # a Generator or RandomState cannot be written; the factors are saved anyway
    if not (seed is None or isinstance(seed, numbers.Integral)):
        params["random_state"] = None
    elif seed is not None:
        params["random_state"] = int(seed)
    return params


def save(solver, directory, overwrite=False):
    # params.json last: a directory with it is a complete model
    directory = prepare_directory(directory, FILES, overwrite, marker="params.json")
    metadata = {
        "format_version": FORMAT_VERSION,
        "params": _params_for_json(solver),
        "n_users": int(solver.user_factors_.shape[0]),
        "n_items": int(solver.item_factors_.shape[0]),
        "factors": int(solver.item_factors_.shape[1]),
        "dtype": solver.item_factors_.dtype.name,
        "loss": solver.loss_.to_dict(),  # the fitted loss, every hyperparameter resolved
    }
    # factors of a GPU model are copied to the host: both backends write the same files
    writers = {name: (lambda file, factors=factors: np.save(file, to_host(factors),
                                                            allow_pickle=False))
               for name, factors in (("user_factors.npy", solver.user_factors_),
                                     ("item_factors.npy", solver.item_factors_))}
    writers["user_items.npz"] = lambda file: sp.save_npz(file, solver.user_items_,
                                                         compressed=True)
    writers["params.json"] = lambda file: file.write(json.dumps(metadata, indent=2).encode()
                                                     + b"\n")
    write_together(directory, writers, marker="params.json")


def _read_file(path, load):
    """load(path), with damage (a truncated or corrupted file) reported by the file's name."""
    try:
        return load(path)
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} cannot be read ({error}): the file is truncated or "
                         "damaged; save the model again") from error


def read(directory):
    """(params, user factors, item factors, user_items, fitted loss as a dict) from a
    directory written by `save`; ALSSolver.load builds the model."""
    directory = require_files(directory, FILES, "is not a saved rgals model")
    try:
        metadata = json.loads((directory / "params.json").read_text())
        if not isinstance(metadata, dict) or not isinstance(metadata.get("params"), dict):
            raise ValueError("it holds no 'params' object")
        params = dict(metadata["params"])
        expected = {"user_factors.npy": (metadata["n_users"], metadata["factors"]),
                    "item_factors.npy": (metadata["n_items"], metadata["factors"])}
        version = metadata.get("format_version")
        # format 1 kept no fitted loss: the estimator's parameters define it
        loss = metadata["loss"] if version == FORMAT_VERSION else make_loss(
            params["loss"], **{name: params.get(name) for name in
                               ("alpha", "regularization", "reg_exponent")}).to_dict()
        make_loss(loss)  # a known loss with valid hyperparameters
        spec = params.get("loss")
        if isinstance(spec, dict):
            built = make_loss(spec)
            # a Loss object is saved as its complete to_dict(); a dict the user gave
            # (options beside the estimator's alpha and regularization) stays that dict
            if set(spec) - {"name"} == set(built.hyperparameters):
                params["loss"] = built
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(f"{directory / 'params.json'} is not a valid rgals model description: "
                         f"{error}") from error
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{directory} was saved in format {version}; this rgals reads "
                         f"formats {', '.join(map(str, READABLE_VERSIONS))}")
    factors = []
    for name, shape in expected.items():
        array = _read_file(directory / name, lambda path: np.load(path, allow_pickle=False))
        if array.shape != tuple(shape):
            raise ValueError(f"{directory / name} has shape {array.shape}; params.json says "
                             f"{tuple(shape)}")
        if array.dtype.name not in FACTOR_DTYPES or array.dtype.name != metadata.get("dtype"):
            raise ValueError(f"{directory / name} holds {array.dtype} factors; params.json "
                             f"says {metadata.get('dtype')} (one of {', '.join(FACTOR_DTYPES)})")
        if not np.isfinite(array).all():
            raise ValueError(f"{directory / name} holds NaN or infinite factors: the file is "
                             "damaged, or the model diverged before it was saved")
        factors.append(array)
    user_items = _read_file(directory / "user_items.npz",
                            lambda path: sp.load_npz(path).tocsr())
    if user_items.shape != (metadata["n_users"], metadata["n_items"]):
        raise ValueError(f"{directory / 'user_items.npz'} has shape {user_items.shape}; "
                         f"params.json says ({metadata['n_users']}, {metadata['n_items']})")
    return params, factors[0], factors[1], user_items, loss
