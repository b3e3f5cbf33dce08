"""Save a fitted solver as .npy files plus JSON, and read them back (ALSSolver.load)."""

import json
import numbers

import numpy as np
import scipy.sparse as sp

from .backend import to_host
from .files import check_directory, require_files, write_atomic
from .losses import Loss, make_loss

FORMAT_VERSION = 2  # 2: the fitted loss in params.json
READABLE_VERSIONS = (1, 2)
FILES = ("user_factors.npy", "item_factors.npy", "user_items.npz", "params.json")


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
    directory = check_directory(directory, FILES, overwrite)
    directory.mkdir(parents=True, exist_ok=True)
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


def read(directory):
    """(params, user factors, item factors, user_items, fitted loss as a dict) from a
    directory written by `save`; ALSSolver.load builds the model."""
    directory = require_files(directory, FILES, "is not a saved rgals model")
    try:
        metadata = json.loads((directory / "params.json").read_text())
        params = dict(metadata["params"])
        expected = {"user_factors.npy": (metadata["n_users"], metadata["factors"]),
                    "item_factors.npy": (metadata["n_items"], metadata["factors"])}
        version = metadata.get("format_version")
        # format 1 kept no fitted loss: the estimator's parameters define it
        loss = metadata["loss"] if version == FORMAT_VERSION else make_loss(
            params["loss"], **{name: params.get(name) for name in
                               ("alpha", "regularization", "reg_exponent")}).to_dict()
        spec = params.get("loss")
        if isinstance(spec, dict):
            built = make_loss(spec)
            # a Loss object is saved as its complete to_dict(); a dict the user gave
            # (options beside the estimator's alpha and regularization) stays that dict
            if set(spec) - {"name"} == set(built.hyperparameters):
                params["loss"] = built
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{directory / 'params.json'} is not a valid rgals model description: "
                         f"{error}") from error
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{directory} was saved in format {version}; this rgals reads "
                         f"formats {', '.join(map(str, READABLE_VERSIONS))}")
    factors = []
    for name, shape in expected.items():
        array = np.load(directory / name, allow_pickle=False)
        if array.shape != tuple(shape):
            raise ValueError(f"{directory / name} has shape {array.shape}; params.json says "
                             f"{tuple(shape)}")
        factors.append(array)
    user_items = sp.load_npz(directory / "user_items.npz").tocsr()
    if user_items.shape != (metadata["n_users"], metadata["n_items"]):
        raise ValueError(f"{directory / 'user_items.npz'} has shape {user_items.shape}; "
                         f"params.json says ({metadata['n_users']}, {metadata['n_items']})")
    return params, factors[0], factors[1], user_items, loss
