"""Save a fitted solver and read it back (ALSSolver.load), in two layouts.

A directory: one `.npy` per factor matrix (what other tools read), the training matrix
(`user_items.npz`) or only its totals (`interaction_totals.npz`), and params.json, written
last as the mark of a complete save. One `.npz` file (a path ending in ".npz", or an open
file): the same arrays under `implicit`'s keys, so that `implicit`'s `load` reads an rgals
file and `ALSSolver.load` reads an `implicit` one (an iALS model: its factors and
hyperparameters, without the training data).
"""

import json
import numbers
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .backend import to_host
from .files import prepare_directory, require_files, stray_temporaries, write_atomic, \
    write_together
from .losses import Loss, make_loss
from .prepared import InteractionTotals

FORMAT_VERSION = 3  # 3: the training matrix optional, the previous item factors
READABLE_VERSIONS = (1, 2, 3)
FACTOR_DTYPES = ("float32", "float64")
MARKER = "params.json"
INTERACTIONS, TOTALS = "user_items.npz", "interaction_totals.npz"
ARRAYS = ("user_factors", "item_factors", "previous_item_factors")
# what a default save writes, and every name a save may write (an overwrite replaces all)
FILES = tuple(f"{name}.npy" for name in ARRAYS) + (INTERACTIONS, MARKER)
ALL_FILES = FILES + (TOTALS,)
# what RG2/RGx took for alpha and regularization when format 1 was written
FORMAT_1_DEFAULTS = {"alpha": 0.01, "regularization": 1e-3}
# what implicit.cpu.als.AlternatingLeastSquares (0.7) assumes for a key its file lacks
IMPLICIT_ALS_DEFAULTS = {"factors": 100, "regularization": 0.01, "alpha": 1.0,
                         "iterations": 15, "cg_steps": 3, "use_cg": True, "num_threads": 0,
                         "random_state": None, "dtype": "float32"}


@dataclass
class Saved:
    """What a save holds: ALSSolver.load builds the model from it."""

    params: dict
    user_factors: np.ndarray
    item_factors: np.ndarray
    previous_item_factors: object  # None: not saved (older formats, implicit's files)
    user_items: object  # CSR, or None when saved without it
    totals: InteractionTotals
    loss: dict  # the fitted loss, every hyperparameter resolved


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


def _contents(solver, interactions):
    """(metadata, {name: host array}, user_items or None, totals or None) to write."""
    if interactions and solver.user_items_ is None:
        raise ValueError("this model holds no training interactions (it was saved without "
                         "them, or read from implicit's file): save(..., interactions=False)")
    totals = solver.interaction_totals_
    metadata = {
        "format_version": FORMAT_VERSION,
        "params": _params_for_json(solver),
        "n_users": int(solver.user_factors_.shape[0]),
        "n_items": int(solver.item_factors_.shape[0]),
        "factors": int(solver.item_factors_.shape[1]),
        "dtype": solver.item_factors_.dtype.name,
        "loss": solver.loss_.to_dict(),  # the fitted loss, every hyperparameter resolved
        # what is kept of the training data: the matrix, its totals, or (for a model
        # from implicit's file) nothing
        "training_data": ("matrix" if interactions else
                          "totals" if totals.known else "none"),
        "value_range": None if totals.value_range is None else list(totals.value_range),
    }
    # factors of a GPU model are copied to the host: both backends write the same files
    arrays = {name: to_host(getattr(solver, f"{name}_")) for name in ARRAYS
              if getattr(solver, f"{name}_", None) is not None}
    if interactions:
        return metadata, arrays, solver.user_items_, None
    return metadata, arrays, None, totals if totals.known else None


def save(solver, target, overwrite=False, interactions=True):
    """Write `solver` to a directory, a path ending in ".npz", or an open binary file."""
    metadata, arrays, user_items, totals = _contents(solver, interactions)
    if hasattr(target, "write"):
        _write_npz(target, solver, metadata, arrays, user_items, totals)
        return
    if str(target).endswith(".npz"):
        path = Path(target)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite "
                                  "on the command line) to replace it, or choose another name")
        if overwrite:
            for stray in stray_temporaries(path.parent, [path.name]):
                stray.unlink()
        write_atomic(path, lambda file: _write_npz(file, solver, metadata, arrays,
                                                   user_items, totals))
        return
    directory = prepare_directory(target, ALL_FILES, overwrite, marker=MARKER)
    writers = {f"{name}.npy": (lambda file, array=array: np.save(file, array,
                                                                  allow_pickle=False))
               for name, array in arrays.items()}
    if user_items is not None:
        writers[INTERACTIONS] = lambda file: sp.save_npz(file, user_items, compressed=True)
    elif totals is not None:
        writers[TOTALS] = lambda file: np.savez(file, **_totals_arrays(totals))
    writers[MARKER] = lambda file: file.write(json.dumps(metadata, indent=2).encode() + b"\n")
    # names this save does not write: an older save's would be read with the new files
    stale = [name for name in ALL_FILES if name not in writers]
    write_together(directory, writers, marker=MARKER, remove=stale)


def _totals_arrays(totals, prefix=""):
    return {prefix + name: to_host(getattr(totals, name)) for name in InteractionTotals.FIELDS}


def _write_npz(file, solver, metadata, arrays, user_items, totals):
    content = {"user_factors": arrays["user_factors"], "item_factors": arrays["item_factors"]}
    implicit = {"factors": metadata["factors"], "iterations": solver.iterations,
                "num_threads": solver.num_threads, "cg_steps": solver.cg_steps,
                "use_cg": solver.solver != "cholesky", "use_native": True,
                "calculate_training_loss": False, "dtype": metadata["dtype"],
                "random_state": metadata["params"]["random_state"]}
    if solver.loss_.name == "ials":  # implicit's alpha and regularization mean the same
        implicit.update(alpha=solver.loss_.alpha, regularization=solver.loss_.regularization)
    content.update({key: value for key, value in implicit.items() if value is not None})
    content["rgals_metadata"] = np.array(json.dumps(metadata))
    if "previous_item_factors" in arrays:
        content["rgals_previous_item_factors"] = arrays["previous_item_factors"]
    if user_items is not None:
        content.update(rgals_user_items_data=user_items.data,
                       rgals_user_items_indices=user_items.indices,
                       rgals_user_items_indptr=user_items.indptr)
    elif totals is not None:
        content.update(_totals_arrays(totals, prefix="rgals_"))
    np.savez(file, **content)


def _read_file(path, load):
    """load(path), with damage (a truncated or corrupted file) reported by the file's name."""
    try:
        return load(path)
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} cannot be read ({error}): the file is truncated or "
                         "damaged; save the model again") from error


def read(source):
    """A `Saved` from a directory or .npz file written by `save`, an open .npz file, or a
    file written by implicit's `save`."""
    if hasattr(source, "read"):
        return _read_npz(source, getattr(source, "name", "the file object"))
    path = Path(source)
    if not path.exists() and path.suffix != ".npz" and Path(f"{path}.npz").is_file():
        path = Path(f"{path}.npz")  # as implicit's load finds "model" saved as model.npz
    if path.is_file():
        return _read_npz(path, path)
    directory = require_files(path, (*FILES[:2], MARKER), "is not a saved rgals model")
    metadata = _read_metadata(directory / MARKER, (directory / MARKER).read_text)
    arrays = {name: _read_file(directory / f"{name}.npy",
                               lambda file: np.load(file, allow_pickle=False))
              for name in ARRAYS if (directory / f"{name}.npy").is_file()}
    user_items = totals = None
    kept = metadata.get("training_data", "matrix")  # formats 1 and 2 kept the matrix
    needed = {"matrix": INTERACTIONS, "totals": TOTALS}.get(kept)
    if needed is not None:
        require_files(directory, [needed], "is not a complete rgals model")
    if kept == "matrix":
        user_items = _read_file(directory / INTERACTIONS, lambda file: sp.load_npz(file).tocsr())
    elif kept == "totals":
        totals = _read_file(directory / TOTALS, lambda file: dict(np.load(file)))
    return _checked(metadata, arrays, user_items, totals, MARKER,
                    lambda name: directory / name)


def _read_metadata(where, text):
    """params.json's content as a dict, with its params and loss checked."""
    try:
        metadata = json.loads(text())
        if not isinstance(metadata, dict) or not isinstance(metadata.get("params"), dict):
            raise ValueError("it holds no 'params' object")
        params = metadata["params"] = dict(metadata["params"])
        version = metadata.get("format_version")
        # format 1 kept no fitted loss: the estimator's parameters define it, with the
        # defaults of its time where they are None (RG2/RGx: alpha 0.01, lam 0.001)
        if version == 1:
            loss = make_loss(params["loss"], **{
                name: params.get(name) for name in ("alpha", "regularization",
                                                    "reg_exponent")}).to_dict()
            metadata["loss"] = {name: FORMAT_1_DEFAULTS.get(name) if value is None and
                                name in FORMAT_1_DEFAULTS else value
                                for name, value in loss.items()}
        make_loss(metadata["loss"])  # a known loss with valid hyperparameters
        for key in ("n_users", "n_items", "factors"):
            metadata[key] = int(metadata[key])
        if metadata.get("training_data", "matrix") not in ("matrix", "totals", "none"):
            raise ValueError(f"unknown training_data {metadata['training_data']!r}")
        spec = params.get("loss")
        if isinstance(spec, dict):
            built = make_loss(spec)
            # a Loss object is saved as its complete to_dict(); a dict the user gave
            # (options beside the estimator's alpha and regularization) stays that dict
            if set(spec) - {"name"} == set(built.hyperparameters):
                params["loss"] = built
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(f"{where} is not a valid rgals model description: {error}") from error
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{where} was saved in format {version}; this rgals reads formats "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    return metadata


def _read_npz(source, where):
    def arrays_of(file):
        with np.load(file, allow_pickle=False) as content:
            return {key: content[key] for key in content.files}

    content = _read_file(source, arrays_of)
    missing = [name for name in ARRAYS[:2] if name not in content]
    if missing:
        raise ValueError(f"{where} holds no {missing[0]}: not a fitted model (an unfitted "
                         "implicit model is saved without factors)")
    arrays = {name: content.pop(key) for name, key in (
        ("user_factors", "user_factors"), ("item_factors", "item_factors"),
        ("previous_item_factors", "rgals_previous_item_factors")) if key in content}
    if "rgals_metadata" not in content:
        return _from_implicit(content, arrays, where)
    metadata = _read_metadata(where, lambda: str(content["rgals_metadata"]))
    user_items = totals = None
    kept = metadata.get("training_data")
    if kept == "matrix":
        user_items = tuple(content.get(f"rgals_user_items_{name}")
                           for name in ("data", "indices", "indptr"))
    elif kept == "totals":
        totals = {name: content.get(f"rgals_{name}") for name in InteractionTotals.FIELDS}
    return _checked(metadata, arrays, user_items, totals, "its metadata", _inside(where))


def _inside(where):
    """How an error names the part `name` of the .npz file `where`."""
    return lambda name: f"{where} ({name.split('.')[0]})"


def _from_implicit(content, arrays, where):
    """A Saved of an `implicit` ALS model: iALS with its hyperparameters, no training data."""
    def value(key):
        item = content[key].item() if key in content else IMPLICIT_ALS_DEFAULTS[key]
        return str(item) if key == "dtype" else item

    n_users, factors = arrays["user_factors"].shape if arrays["user_factors"].ndim == 2 \
        else (0, 0)
    metadata = {"n_users": n_users, "n_items": len(arrays["item_factors"]),
                "factors": factors, "dtype": value("dtype"), "value_range": None}
    params = {"loss": "ials", "factors": factors, "iterations": value("iterations"),
              "cg_steps": value("cg_steps"), "num_threads": value("num_threads"),
              "solver": "cg" if value("use_cg") else "cholesky", "dtype": value("dtype"),
              "random_state": value("random_state")}
    loss = {"name": "ials", "alpha": value("alpha"), "regularization": value("regularization")}
    saved = _checked({**metadata, "params": params, "loss": loss}, arrays, None, None,
                     "its factors", _inside(where))
    saved.params.update(alpha=loss["alpha"], regularization=loss["regularization"])
    return saved


def _checked(metadata, arrays, user_items, totals, description, locate):
    """A Saved once every array agrees with the metadata; `description` names where the
    metadata lives, `locate(file name)` where each part does."""
    n_users, n_items = metadata["n_users"], metadata["n_items"]
    shapes = {"user_factors": (n_users, metadata["factors"]),
              "item_factors": (n_items, metadata["factors"]),
              "previous_item_factors": (n_items, metadata["factors"])}
    for name, array in arrays.items():
        label = locate(f"{name}.npy")
        if array.shape != shapes[name]:
            raise ValueError(f"{label} has shape {array.shape}; {description} says "
                             f"{shapes[name]}")
        if array.dtype.name not in FACTOR_DTYPES or array.dtype.name != metadata["dtype"]:
            raise ValueError(f"{label} holds {array.dtype} factors; {description} says "
                             f"{metadata['dtype']} (one of {', '.join(FACTOR_DTYPES)})")
        if not np.isfinite(array).all():
            raise ValueError(f"{label} holds NaN or infinite factors: the file is damaged, or "
                             "the model diverged before it was saved")
    shape = (n_users, n_items)
    if isinstance(user_items, tuple):  # the arrays of an .npz file
        try:
            if any(part is None for part in user_items):
                raise ValueError("a part of it is missing")
            user_items = sp.csr_matrix(user_items, shape=shape)
            user_items.check_format(full_check=True)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{locate(INTERACTIONS)} is damaged ({error}); save the model "
                             "again") from error
    if user_items is not None:
        if user_items.shape != shape:
            raise ValueError(f"{locate(INTERACTIONS)} has shape {user_items.shape}; "
                             f"{description} says {shape}")
        totals = InteractionTotals.of(user_items)
    elif totals is not None:
        lengths = {"user_counts": n_users, "user_sums": n_users, "item_counts": n_items,
                   "item_sums": n_items}
        wrong = [name for name in InteractionTotals.FIELDS if totals.get(name) is None
                 or np.shape(totals[name]) != (lengths[name],)]
        if wrong:
            raise ValueError(f"{locate(TOTALS)} is damaged ({wrong[0]} is missing or not "
                             f"of length {lengths[wrong[0]]}); save the model again")
        value_range = metadata.get("value_range")
        totals = InteractionTotals(shape, **totals,
                                   value_range=None if value_range is None
                                   else tuple(value_range))
    else:
        totals = InteractionTotals.unknown(shape)
    return Saved(metadata["params"], arrays["user_factors"], arrays["item_factors"],
                 arrays.get("previous_item_factors"), user_items, totals, metadata["loss"])
