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
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .backend import BACKENDS, to_host
from .files import (ChangedWhileRead, file_digest, marker_changed, prepare_directory,
                    read_together, require_files, save_lock, save_under_way,
                    stray_temporaries, write_atomic, write_together)
from .losses import Loss, make_loss
from .prepared import InteractionTotals
from .validation import check_interactions

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
    if params["backend"] not in BACKENDS:  # the private test backend is never written
        params["backend"] = "cpu"
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
    writers = {f"{name}.npy": (lambda file, array=array: np.save(file, array,
                                                                  allow_pickle=False))
               for name, array in arrays.items()}
    if user_items is not None:
        writers[INTERACTIONS] = lambda file: sp.save_npz(file, user_items, compressed=True)
    elif totals is not None:
        writers[TOTALS] = lambda file: np.savez(file, **_totals_arrays(totals))

    def describe(digests):  # params.json: what load checks every file against
        return json.dumps({**metadata, "files": digests}, indent=2).encode() + b"\n"

    # names this save does not write: an older save's would be read with the new files
    stale = [name for name in ALL_FILES if name not in writers and name != MARKER]
    with save_lock(target) as directory:  # the existence check too: overwrite=False holds
        prepare_directory(directory, ALL_FILES, overwrite, marker=MARKER)
        write_together(directory, writers, MARKER, describe, remove=stale)


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


def read(source):
    """A `Saved` from a directory or .npz file written by `save`, an open .npz file, or a
    file written by implicit's `save`. Every part is checked against the model's
    description before the next is read, and nothing larger than it declares is
    allocated; a directory is read as one save (see rgals.files)."""
    if hasattr(source, "read"):
        return _read_npz(source, getattr(source, "name", "the file object"))
    path = Path(source)
    if not path.exists() and path.suffix != ".npz" and Path(f"{path}.npz").is_file():
        path = Path(f"{path}.npz")  # as implicit's load finds "model" saved as model.npz
    if path.is_file():
        return _read_npz(path, path)
    saved, previous = read_together(path, MARKER,
                                    lambda name_of: _read_directory(path, name_of))
    if previous and not save_under_way(path):
        warnings.warn(f"{path} holds an interrupted save (no {MARKER}); loaded the model "
                      "saved before it, which the directory still keeps. Save again to "
                      "complete it", stacklevel=3)
    return saved


def _read_directory(directory, name_of):
    """The Saved of the files `name_of(name)` (the group in place or the previous one),
    each checked against the SHA-256 that params.json lists for it (saves since files
    were listed)."""
    marker = name_of(MARKER)
    try:
        text = marker.read_bytes()
    except FileNotFoundError:
        require_files(directory, (*FILES[:2], MARKER), "is not a saved rgals model")
        raise
    metadata = _read_metadata(directory / MARKER, text.decode)
    digests = metadata.get("files") or {}
    differing = []  # files whose SHA-256 is not the one params.json lists

    def read_file(name, reader):
        """reader(open file, its label) of the file `name`."""
        try:
            with open(name_of(name), "rb") as file:
                value = reader(file, directory / name)
                if name in digests:
                    file.seek(0)
                    if file_digest(file) != digests[name]:
                        differing.append(name)
        except FileNotFoundError:
            raise FileNotFoundError(f"{directory} is not a complete rgals model: missing "
                                    f"{name}") from None
        return value

    kept = metadata.get("training_data", "matrix")  # formats 1 and 2 kept the matrix
    if digests:  # a save that lists its files lists these
        needed = [f"{name}.npy" for name in ARRAYS[:2]] + \
            [{"matrix": INTERACTIONS, "totals": TOTALS}.get(kept)]
        unlisted = [name for name in needed if name is not None and name not in digests]
        if unlisted:
            raise ValueError(f"{directory / MARKER} does not list {unlisted[0]} among the "
                             "model's files: it is damaged or was edited; save the model "
                             "again")
    try:
        shapes = _factor_shapes(metadata)
        present = [name for name in ARRAYS if f"{name}.npy" in digests
                   or (not digests and name_of(f"{name}.npy").is_file())]
        if not {"user_factors", "item_factors"} <= set(present):
            require_files(directory, FILES[:2], "is not a complete rgals model")
        arrays = {name: read_file(f"{name}.npy", lambda file, label, name=name: read_npy(
            file, label, shapes[name])) for name in present}
        user_items = totals = None
        if kept == "matrix":
            user_items = read_file(INTERACTIONS, lambda file, label: _with_archive(
                file, label, lambda archive: _read_matrix(archive, metadata)))
        elif kept == "totals":
            totals = read_file(TOTALS, lambda file, label: _with_archive(
                file, label, lambda archive: _read_totals(archive, metadata)))
        saved = _checked(metadata, arrays, user_items, totals, MARKER,
                         lambda name: directory / name)
        if differing:
            raise ValueError(f"{directory / differing[0]} does not match {MARKER} (its "
                             "SHA-256 differs): the file is damaged, or was replaced by "
                             "hand; save the model again")
    except (ValueError, FileNotFoundError):
        if marker_changed(marker, text):  # a save replaced files while they were read
            raise ChangedWhileRead from None
        raise
    return saved


def _factor_shapes(metadata):
    rows = {"user_factors": metadata["n_users"], "item_factors": metadata["n_items"],
            "previous_item_factors": metadata["n_items"]}
    return {name: (count, metadata["factors"]) for name, count in rows.items()}


# what reading a damaged zip file or .npy raises, besides our own errors: zipfile's zoo
# (an unknown compression method, an encrypted member, a bad CRC) and the decompressor's
_DAMAGE = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error,
           NotImplementedError, RuntimeError)


def read_npy(file, label, shape=None):
    """The array of an open .npy file (or .npz member) in native byte order, once its
    header is known to declare `shape` (None: any) and no Python objects, so that
    nothing larger than the model declares is allocated."""
    try:
        version = np.lib.format.read_magic(file)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f".npy format {version[0]}.{version[1]}, which rgals does not "
                             "read")
        declared, fortran, dtype = read_header(file)
    # numpy parses the header as a Python literal: damage there raises whatever its
    # tokenizer and parser raise (SyntaxError, TokenError, ...)
    except Exception as error:  # noqa: BLE001 - every one means a damaged header
        raise ValueError(f"{label} cannot be read (not a .npy array: {error}): the file is "
                         "truncated or damaged; save the model again") from error
    if dtype.hasobject:
        raise ValueError(f"{label} holds Python objects (pickled data), which rgals never "
                         "reads; save the model again")
    if shape is not None and tuple(declared) != tuple(shape):
        raise ValueError(f"{label} has shape {tuple(declared)}; the model's description "
                         f"says {tuple(shape)}")
    try:
        array = np.empty(declared, dtype=dtype, order="F" if fortran else "C")
    except (MemoryError, ValueError) as error:
        raise ValueError(f"{label} declares an array of shape {tuple(declared)} ({dtype}), "
                         f"which cannot be allocated ({error}): the file is damaged") from error
    view = memoryview(array.T if fortran else array).cast("B")
    filled = 0
    try:
        while filled < len(view):
            count = file.readinto(view[filled:])
            if not count:
                break
            filled += count
        extra = file.read(1)
    except _DAMAGE as error:
        raise ValueError(f"{label} cannot be read ({error}): the file is truncated or "
                         "damaged; save the model again") from error
    if filled < len(view) or extra:
        problem = "it ends early" if filled < len(view) else "it is longer than its header says"
        raise ValueError(f"{label} cannot be read ({problem}): the file is truncated or "
                         "damaged; save the model again")
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


class _Archive:
    """The .npy members of an open .npz, read one at a time through `read_npy`."""

    def __init__(self, archive, label):
        self.archive, self.label = archive, label
        self.names = {name[:-4] for name in archive.namelist() if name.endswith(".npy")}

    def array(self, name, shape=None, called=None):
        """Member `name` (None when the file has none) with the `shape` it must have;
        errors call it `called` (default: its name)."""
        if name not in self.names:
            return None
        label = f"{self.label} ({called or name})"
        try:
            member = self.archive.open(f"{name}.npy")
        except _DAMAGE as error:
            raise ValueError(f"{label} cannot be read ({error}): the file is truncated or "
                             "damaged; save the model again") from error
        with member:
            return read_npy(member, label, shape)

    def text(self, name, most=1 << 20):
        """A 0-d string member of at most `most` bytes (the model's description)."""
        if self.archive.getinfo(f"{name}.npy").file_size > most:
            raise ValueError(f"{self.label} ({name}) is larger than a model description "
                             "can be: the file is damaged; save the model again")
        value = self.array(name, ())
        if value.dtype.kind not in "US":
            raise ValueError(f"{self.label} ({name}) does not hold text")
        return str(value)


def _with_archive(source, label, read):
    """read(_Archive) of an .npz (path or open binary file); anything but a zip file is
    a clear error that says what the file looks like."""
    if hasattr(source, "read"):
        start = source.tell()
        head = source.read(4)
        source.seek(start)
    else:
        with open(source, "rb") as file:
            head = file.read(4)
    if head not in (b"PK\x03\x04", b"PK\x05\x06"):
        text = head and all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head)
        raise ValueError(f"{label} cannot be read: it is not an .npz file (it begins like "
                         f"{'a text file' if text else 'another kind of file'}); give a "
                         "model directory or an .npz file that save wrote, or save the "
                         "model again if this file is truncated or damaged")
    try:
        archive = zipfile.ZipFile(source)
    except _DAMAGE as error:
        raise ValueError(f"{label} cannot be read ({error}): the file is truncated or "
                         "damaged; save the model again") from error
    with archive:
        return read(_Archive(archive, label))


def _read_matrix(archive, metadata, prefix=""):
    """The training CSR kept in an .npz: SciPy's save_npz members, or an rgals .npz
    file's rgals_user_items_* (`prefix`); each part checked before the next is read."""
    shape = (metadata["n_users"], metadata["n_items"])
    label = f"{archive.label} (user_items)" if prefix else archive.label
    if not prefix:
        kind, stored = archive.array("format", ()), archive.array("shape", (2,))
        kind = kind.item() if kind is not None else None
        kind = kind.decode(errors="replace") if isinstance(kind, bytes) else kind
        if kind != "csr" or stored is None or stored.dtype.kind not in "iu" or \
                tuple(int(n) for n in stored) != shape:
            raise ValueError(f"{label} does not hold a {shape[0]} x {shape[1]} CSR matrix "
                             f"(format {kind}, shape {stored}); the model's description says "
                             "so: save the model again")
    indptr = archive.array(f"{prefix}indptr", (shape[0] + 1,))
    if indptr is None:
        raise ValueError(f"{label} is damaged (its indptr is missing); save the model again")
    counts = np.diff(indptr)
    if indptr.dtype.kind not in "iu" or indptr[0] != 0 or (counts < 0).any() or \
            (counts > shape[1]).any():
        raise ValueError(f"{label} is damaged (its indptr is not the row starts of a "
                         f"{shape[0]} x {shape[1]} matrix); save the model again")
    nnz = int(indptr[-1])
    indices = archive.array(f"{prefix}indices", (nnz,))
    data = archive.array(f"{prefix}data", (nnz,))
    try:
        if indices is None or data is None:
            raise ValueError("a part of it is missing")
        matrix = sp.csr_matrix((data, indices, indptr), shape=shape)
        matrix.check_format(full_check=True)
        return check_interactions(matrix, name=str(label), shape=shape, allow_empty=True,
                                  allow_negative=metadata["loss"]["name"] == "ials")
    except (ValueError, TypeError) as error:
        raise ValueError(f"{label} is damaged ({error}); save the model again") from error


def _read_totals(archive, metadata, prefix=""):
    """{field: array} of the training totals kept in an .npz, each of its length, with
    counts that are non-negative integers and finite sums."""
    lengths = {"user_counts": metadata["n_users"], "user_sums": metadata["n_users"],
               "item_counts": metadata["n_items"], "item_sums": metadata["n_items"]}
    totals = {}
    for name, length in lengths.items():
        value = archive.array(prefix + name, (length,))
        counts = name.endswith("counts")
        if value is None or value.dtype.kind not in ("iu" if counts else "iuf") or \
                (counts and (value < 0).any()) or not np.isfinite(value).all():
            label = f"{archive.label} (interaction_totals)" if prefix else archive.label
            raise ValueError(f"{label} is damaged ({name} is missing, or not "
                             f"{'non-negative integers' if counts else 'finite numbers'} "
                             f"of length {length}); save the model again")
        totals[name] = value.astype(np.int64 if counts else np.float64)
    return totals


def _read_metadata(where, text):
    """params.json's content as a dict, with its params and loss checked."""
    try:
        metadata = json.loads(text(), parse_constant=_refuse_constant)
        if not isinstance(metadata, dict) or not isinstance(metadata.get("params"), dict):
            raise ValueError("it holds no 'params' object")
        version = metadata.get("format_version")
        if not (isinstance(version, int) and not isinstance(version, bool)):
            raise ValueError(f"format_version must be an integer; got {version!r}")
        if version not in READABLE_VERSIONS:
            raise _UnknownVersion(version)
        params = metadata["params"] = dict(metadata["params"])
        # format 1 kept no fitted loss: the estimator's parameters define it, with the
        # defaults of its time where they are None (RG2/RGx: alpha 0.01, lam 0.001)
        if version == 1:
            loss = make_loss(params["loss"], **{
                name: params.get(name) for name in ("alpha", "regularization",
                                                    "reg_exponent")}).to_dict()
            metadata["loss"] = {name: FORMAT_1_DEFAULTS.get(name) if value is None and
                                name in FORMAT_1_DEFAULTS else value
                                for name, value in loss.items()}
        fitted = make_loss(metadata["loss"])  # a known loss with valid hyperparameters
        unresolved = [name for name, domain in fitted.hyperparameters.items()
                      if domain.from_data and getattr(fitted, name) is None]
        if unresolved:
            raise ValueError(f"the fitted loss's {unresolved[0]} is null: a saved model "
                             "keeps every value its fit resolved")
        for key in ("n_users", "n_items", "factors"):
            metadata[key] = _count(metadata.get(key), key)
        if metadata.get("dtype") not in FACTOR_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(FACTOR_DTYPES)}; got "
                             f"{metadata.get('dtype')!r}")
        if metadata.get("training_data", "matrix") not in ("matrix", "totals", "none"):
            raise ValueError(f"unknown training_data {metadata['training_data']!r}")
        metadata["value_range"] = _value_range(metadata.get("value_range"))
        files = metadata.get("files")
        if files is not None and not (isinstance(files, dict) and all(
                isinstance(name, str) and isinstance(digest, str)
                for name, digest in files.items())):
            raise ValueError("'files' must map file names to their SHA-256")
        _check_params_agree(params, metadata)
        spec = params.get("loss")
        if isinstance(spec, dict):
            built = make_loss(spec)
            # a Loss object is saved as its complete to_dict(); a dict the user gave
            # (options beside the estimator's alpha and regularization) stays that dict
            if set(spec) - {"name"} == set(built.hyperparameters):
                params["loss"] = built
    except _UnknownVersion as error:
        raise ValueError(f"{where} was saved in format {error.args[0]}; this rgals reads "
                         f"formats {', '.join(map(str, READABLE_VERSIONS))} (a newer rgals "
                         "wrote it: upgrade rgals)") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{where} is not a valid rgals model description: {error}") from error
    return metadata


class _UnknownVersion(Exception):
    pass


def _refuse_constant(name):
    raise ValueError(f"{name} is not a number a model description may hold")


def _count(value, key):
    """A JSON count: an integer >= 0 (not a bool, not 60.9)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be an integer >= 0; got {value!r}")
    return value


def _value_range(value):
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(
            isinstance(end, (int, float)) and not isinstance(end, bool) for end in value)
            and 0 <= value[0] <= value[1] < float("inf")):
        raise ValueError(f"value_range must be null or [smallest, largest] |value| stored; "
                         f"got {value!r}")
    return tuple(float(end) for end in value)


def _check_params_agree(params, metadata):
    """The estimator's parameters describe the model they were saved with: its factors,
    dtype, loss and a public backend."""
    if params.get("factors") is not None and params["factors"] != metadata["factors"]:
        raise ValueError(f"params say factors={params['factors']!r} but the model has "
                         f"{metadata['factors']}")
    if params.get("dtype") is not None and params["dtype"] != metadata["dtype"]:
        raise ValueError(f"params say dtype={params['dtype']!r} but the model's factors are "
                         f"{metadata['dtype']}")
    loss = params.get("loss")
    name = loss.get("name") if isinstance(loss, dict) else loss
    if isinstance(name, str) and make_loss(name).name != metadata["loss"]["name"]:
        raise ValueError(f"params say loss={name!r} but the model was fitted with "
                         f"{metadata['loss']['name']!r}")
    if params.get("backend", "cpu") not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got "
                         f"{params['backend']!r}")


def _read_npz(source, where):
    def read(archive):
        missing = [name for name in ARRAYS[:2] if name not in archive.names]
        if missing:
            raise ValueError(f"{where} holds no {missing[0]}: not a fitted model (an "
                             "unfitted implicit model is saved without factors)")
        if "rgals_metadata" not in archive.names:
            return _from_implicit(archive, where)
        metadata = _read_metadata(where, lambda: archive.text("rgals_metadata"))
        shapes = _factor_shapes(metadata)
        arrays = {name: archive.array(key, shapes[name], name) for name, key in (
            ("user_factors", "user_factors"), ("item_factors", "item_factors"),
            ("previous_item_factors", "rgals_previous_item_factors"))
            if key in archive.names}
        user_items = totals = None
        kept = metadata.get("training_data")
        if kept == "matrix":
            user_items = _read_matrix(archive, metadata, prefix="rgals_user_items_")
        elif kept == "totals":
            totals = _read_totals(archive, metadata, prefix="rgals_")
        return _checked(metadata, arrays, user_items, totals, "its metadata", _inside(where))

    return _with_archive(source, where, read)


def _inside(where):
    """How an error names the part `name` of the .npz file `where`."""
    return lambda name: f"{where} ({name.split('.')[0]})"


# keys that only implicit's other models (BPR, LMF) save: their factors mean something else
IMPLICIT_OTHER_MODELS = ("learning_rate", "verify_negative_samples", "neg_prop")


def _from_implicit(archive, where):
    """A Saved of an `implicit` ALS model: iALS with its hyperparameters, no training data."""
    other = [key for key in IMPLICIT_OTHER_MODELS if key in archive.names]
    if other:
        raise ValueError(f"{where} is not an implicit ALS model (it holds {other[0]!r}, "
                         "which implicit's BPR and LMF models save): rgals reads implicit's "
                         "AlternatingLeastSquares files only")

    def value(key):
        if key not in archive.names:
            return IMPLICIT_ALS_DEFAULTS[key]
        item = archive.array(key, ()).item()
        return str(item) if key == "dtype" else item

    arrays = {name: archive.array(name) for name in ARRAYS[:2]}
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
    metadata lives, `locate(file name)` where each part does. `user_items` (a checked
    CSR) and `totals` ({field: array} of checked lengths) are what the reader found."""
    n_users, n_items = metadata["n_users"], metadata["n_items"]
    shapes = _factor_shapes(metadata)
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
    if user_items is not None:
        totals = InteractionTotals.of(user_items)
    elif totals is not None:
        totals = InteractionTotals(shape, **totals, value_range=metadata.get("value_range"))
    else:
        totals = InteractionTotals.unknown(shape)
    return Saved(metadata["params"], arrays["user_factors"], arrays["item_factors"],
                 arrays.get("previous_item_factors"), user_items, totals, metadata["loss"])
