"""Interactions: a users x items matrix with the original ids of its rows and columns.

`from_pairs` maps the original ids to dense row and column indices (every reader ends
in it); `from_dataframe` takes the columns of a data frame; `Interactions.save_ids` and
`load_ids` keep the id maps beside saved factors.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..files import prepare_directory, require_files, write_atomic
from ..validation import check_bool, check_choice
from ..types import FilePath

DUPLICATES = ("sum", "error")
UNKNOWN = ("error", "drop")
ID_FILES = ("user_ids.npy", "item_ids.npy")

_SHOWN = 3  # examples quoted in error messages


@dataclass(eq=False, repr=False)
class Interactions:
    """A users x items CSR matrix (float64, sorted indices, no explicit zeros) and the
    original id of each row (`user_ids[row]`) and column (`item_ids[column]`)."""

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray

    def __post_init__(self):
        shape = (len(self.user_ids), len(self.item_ids))
        if tuple(self.matrix.shape) != shape:
            raise ValueError(f"matrix has shape {self.matrix.shape} but there are {shape[0]} "
                             f"user ids and {shape[1]} item ids")

    def __repr__(self):
        return (f"Interactions({self.matrix.shape[0]} users x {self.matrix.shape[1]} items, "
                f"{self.matrix.nnz} interactions)")

    def save_ids(self, directory: FilePath, overwrite: bool = False) -> None:
        """Write user_ids.npy and item_ids.npy into `directory` (created if needed).

        Strings are saved as a numpy unicode array, so `np.load(..., allow_pickle=False)`
        reads them back; row i of saved factors belongs to `user_ids[i]`.
        """
        arrays = [_saveable(self.user_ids, "user_ids"), _saveable(self.item_ids, "item_ids")]
        directory = prepare_directory(directory, ID_FILES, overwrite)
        for name, array in zip(ID_FILES, arrays):
            write_atomic(directory / name,
                          lambda file, array=array: np.save(file, array, allow_pickle=False))


def _counted(count, noun):
    """"1 user id", "2 user ids"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _saveable(ids, name):
    array = np.asarray(ids)
    if array.dtype.kind == "O":  # e.g. ids set by hand from a list of strings
        array = array.astype(str)
    if array.ndim != 1 or array.dtype.kind not in "iuUS":
        raise TypeError(f"{name} must be a 1-D array of integers or strings to be saved; got "
                        f"dtype {array.dtype}, shape {array.shape}")
    return array


def load_ids(directory: FilePath) -> tuple:
    """(user_ids, item_ids) saved by `Interactions.save_ids`."""
    directory = require_files(directory, ID_FILES, "holds no id maps written by "
                              "Interactions.save_ids")
    maps = []
    for name in ID_FILES:
        path = directory / name
        try:
            ids = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"{path} cannot be read ({error}): the file is truncated or "
                             "damaged; save the id maps again") from error
        if ids.ndim != 1 or ids.dtype.kind not in "iuUS":
            raise ValueError(f"{path} must hold a 1-D array of integer or string ids; it "
                             f"holds dtype {ids.dtype}, shape {ids.shape}")
        if np.unique(ids).size != ids.size:
            raise ValueError(f"{path} holds duplicate ids: row i of the factors belongs to "
                             "id [i], so each id must appear once")
        maps.append(ids)
    return tuple(maps)


# ---------------------------------------------------------------------------------------
# Checks and normalisation of ids and values (read uses them too)


def _check_options(min_value, binary, duplicates, unknown):
    if min_value is not None and (isinstance(min_value, bool) or not isinstance(
            min_value, numbers.Real) or not np.isfinite(min_value)):
        raise ValueError(f"min_value must be None or a finite number (interactions with a "
                         f"smaller value are dropped); got {min_value!r}")
    check_bool(binary, "binary")
    check_choice(duplicates, "duplicates", DUPLICATES)
    check_choice(unknown, "unknown", UNKNOWN)


def _check_reference(ids, name):
    """The id array of an existing Interactions (`users=` / `items=`): 1-D and unique."""
    if ids is None:
        return None
    array = _normalize_ids(ids, name, name)
    if array.size == 0:
        raise ValueError(f"{name} is empty; pass the {name[:-1]}_ids of the training "
                         "Interactions")
    unique, counts = np.unique(array, return_counts=True)
    if unique.size != array.size:
        raise ValueError(f"{name} repeats {int(np.sum(counts > 1))} ids (e.g. "
                         f"{unique[counts > 1][0]!r}); pass the {name[:-1]}_ids of an "
                         "Interactions, whose ids are unique")
    return array


def _normalize_ids(ids, what, source):
    """Ids as a 1-D int64 array or a numpy unicode array; anything else is an error."""
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"{source}: {what} must be 1-D; got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "O":
        array = _object_ids(array, what, source)
        kind = array.dtype.kind
    if kind == "i":
        return array.astype(np.int64, copy=False)
    if kind == "u":
        if array.size and array.max() > np.iinfo(np.int64).max:
            return array.astype(str)
        return array.astype(np.int64)
    if kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array)) | (np.abs(array) >= 2.0 ** 53)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{source}: {what} must be integers or strings; position {k} holds "
                             f"{array[k]!r} ({int(bad.sum())} such values)")
        return array.astype(np.int64)
    if kind == "S":
        array = _decode(array)
        kind = "U"
    if kind == "U":
        empty = array == ""
        if empty.any():
            raise ValueError(f"{source}: {what} must not be empty strings; position "
                             f"{int(np.flatnonzero(empty)[0])} is empty ({int(empty.sum())} "
                             "such ids)")
        return array
    raise TypeError(f"{source}: {what} must be integers or strings; got dtype {array.dtype}")


def _object_ids(array, what, source):
    # an object column (e.g. from pandas) holds Python ints, floats or strings
    if all(isinstance(x, str) for x in array):
        return np.array(array.tolist(), dtype=str) if array.size else np.array([], dtype=str)
    numbers_only = []
    for k, x in enumerate(array):
        if isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_)):
            numbers_only.append(int(x))
        elif isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)) \
                and np.isfinite(x) and float(x).is_integer():
            numbers_only.append(int(x))
        else:
            raise ValueError(f"{source}: {what} must be all integers or all strings (no missing "
                             f"values); position {k} holds {x!r}. Convert the column first, "
                             "e.g. with .astype(str)")
    return np.array(numbers_only, dtype=np.int64)


def _normalize_values(values, n, source, user_ids, item_ids):
    array = np.asarray(values)
    if array.ndim != 1 or array.size != n:
        raise ValueError(f"{source}: values must be 1-D with one value per pair ({n}); got "
                         f"shape {array.shape}")
    if array.dtype.kind not in "biuf":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{source}: values must be numbers; got dtype {array.dtype}") \
                from None
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{source}: {int(bad.sum())} values are not finite numbers; the first "
                         f"is {array[k]} at position {k} (user {user_ids[k]!r}, item "
                         f"{item_ids[k]!r}). Drop or replace them")
    return array


def _decode(tokens):
    try:
        return tokens.astype(str)  # ASCII, the usual case: a cast, much faster than decode
    except UnicodeDecodeError:
        return np.char.decode(tokens, "utf-8")


# ---------------------------------------------------------------------------------------
# The core: pairs -> Interactions


def _map_ids(ids):
    """(sorted unique ids, index of each id in them)."""
    if ids.dtype.kind == "i" and ids.size:
        low, high = int(ids.min()), int(ids.max())
        # a presence table beats sorting when the ids are nearly dense (the usual case)
        if high - low < 2 * ids.size + (1 << 20):
            offset = ids - low
            present = np.zeros(high - low + 1, dtype=bool)
            present[offset] = True
            lookup = np.cumsum(present) - 1
            return np.flatnonzero(present) + low, lookup[offset]
    unique, inverse = np.unique(ids, return_inverse=True)
    return unique, inverse.reshape(-1)


def _like(ids, reference):
    """`ids` in the kind of `reference` (int64 or unicode), and which of them could be."""
    valid = np.ones(ids.size, dtype=bool)
    if ids.dtype.kind == reference.dtype.kind:
        return ids, valid
    if reference.dtype.kind == "U":
        return ids.astype(str), valid
    # string ids against integer ids: a string that spells an integer matches it
    unique, inverse = np.unique(ids, return_inverse=True)
    parsed = np.zeros(unique.size, dtype=np.int64)
    ok = np.zeros(unique.size, dtype=bool)
    for k, text in enumerate(unique):
        try:
            number = float(text)
            if np.isfinite(number) and number.is_integer() and abs(number) < 2.0 ** 53:
                parsed[k], ok[k] = int(number), True
        except ValueError:
            pass
    inverse = inverse.reshape(-1)
    return parsed[inverse], ok[inverse]


def _lookup(ids, reference):
    """Index of each id in `reference`, -1 where it is not there."""
    converted, valid = _like(ids, reference)
    order = np.argsort(reference, kind="stable")
    ordered = reference[order]
    position = np.minimum(np.searchsorted(ordered, converted), ordered.size - 1)
    found = valid & (ordered[position] == converted)
    return np.where(found, order[position], -1)


def _examples(ids):
    shown = ", ".join(repr(x.item() if hasattr(x, "item") else x) for x in ids[:_SHOWN])
    return shown + (", ..." if len(ids) > _SHOWN else "")


def from_pairs(user_ids, item_ids, values=None, *, min_value=None, binary=False,
               duplicates="sum", users=None, items=None, unknown="error", source="pairs"):
    """Interactions from parallel arrays of user ids, item ids and (optional) values.

    Ids are integers or strings. Without `values` every pair counts 1. `min_value` drops
    pairs whose value is below it (before the id maps are built, so users and items left
    with nothing get no row or column); `binary=True` then sets every stored value to 1.
    Repeated (user, item) pairs are summed (`duplicates="sum"`) or refused ("error").
    `users` / `items`: the id arrays of an existing Interactions (the training set): rows
    and columns then follow them, and ids not in them are refused (`unknown="error"`) or
    dropped with a warning (`unknown="drop"`). `source` names the data in messages.
    """
    _check_options(min_value, binary, duplicates, unknown)
    if not isinstance(source, str):
        raise TypeError(f"source must be a string naming the data; got {source!r}")
    users = _check_reference(users, "users")
    items = _check_reference(items, "items")
    user_ids = _normalize_ids(user_ids, "user ids", source)
    item_ids = _normalize_ids(item_ids, "item ids", source)
    if user_ids.size != item_ids.size:
        raise ValueError(f"{source}: {user_ids.size} user ids but {item_ids.size} item ids; "
                         "pass one of each per interaction")
    if values is not None:
        values = _normalize_values(values, user_ids.size, source, user_ids, item_ids)
    if user_ids.size == 0:
        raise ValueError(f"{source} holds no interactions")

    if min_value is not None:
        keep = (values if values is not None else np.ones(user_ids.size)) >= min_value
        if not keep.any():
            raise ValueError(f"{source}: no interaction has a value >= min_value={min_value}"
                             + ("" if values is not None else
                                " (without a value column every value is 1)"))
        if not keep.all():
            user_ids, item_ids = user_ids[keep], item_ids[keep]
            values = None if values is None else values[keep]

    total = user_ids.size
    if users is None:
        users, rows = _map_ids(user_ids)
    else:
        rows = _lookup(user_ids, users)
    if items is None:
        items, columns = _map_ids(item_ids)
    else:
        columns = _lookup(item_ids, items)
    unseen = (rows < 0) | (columns < 0)
    if unseen.any():
        new_users = np.unique(user_ids[rows < 0])
        new_items = np.unique(item_ids[columns < 0])
        parts = [f"{what} ({_examples(ids)})" for what, ids in
                 ((_counted(new_users.size, "user id"), new_users),
                  (_counted(new_items.size, "item id"), new_items)) if ids.size]
        count = int(unseen.sum())
        if unknown == "error":
            raise ValueError(f"{source}: {' and '.join(parts)} were never seen in training; "
                             f"{count} of {total} interactions involve them. Pass "
                             "unknown='drop' (--unknown drop on the command line) to skip "
                             "those interactions")
        if count == total:
            raise ValueError(f"{source}: none of the {total} interactions has a user and an item "
                             f"seen in training ({' and '.join(parts)} are new); are the ids "
                             "from the same dataset?")
        warnings.warn(f"{source}: dropped {count} of {total} interactions whose ids were never "
                      f"seen in training: {' and '.join(parts)}", stacklevel=2)
        keep = ~unseen
        rows, columns = rows[keep], columns[keep]
        values = None if values is None else values[keep]

    shape = (users.size, items.size)
    data = np.ones(rows.size) if values is None else values
    matrix = sp.coo_matrix((data, (rows, columns)), shape=shape).tocsr()
    matrix.sum_duplicates()
    repeated = rows.size - matrix.nnz
    if repeated and duplicates == "error":
        key = rows.astype(np.int64) * shape[1] + columns
        ordered = np.sort(key)
        first = int(ordered[1:][ordered[1:] == ordered[:-1]][0])
        row, column = divmod(first, shape[1])
        raise ValueError(f"{source}: {repeated} interactions repeat a (user, item) pair, e.g. "
                         f"user {users[row].item()!r} and item {items[column].item()!r}; pass "
                         "duplicates='sum' to add up their values")
    matrix.eliminate_zeros()
    if matrix.nnz == 0:
        raise ValueError(f"{source}: every value is zero, so there are no interactions")
    if binary:
        matrix.data[:] = 1.0
    matrix.sort_indices()
    return Interactions(matrix, users, items)


def from_dataframe(frame, user_col="user", item_col="item", value_col=None, *, min_value=None,
                   binary=False, duplicates="sum", users=None, items=None, unknown="error"):
    """Interactions from a pandas or polars DataFrame, a pyarrow Table or RecordBatch, or
    a mapping of column name -> array.

    Columns are given by name; the options are those of `from_pairs`. Each column is
    read once into NumPy (numeric columns without missing values as they are, where the
    library allows); a column with missing values (None, NaN, null) is an error.
    """
    _check_options(min_value, binary, duplicates, unknown)
    names, column = _frame_columns(frame)
    for name, wanted in (("user_col", user_col), ("item_col", item_col),
                         ("value_col", value_col)):
        if wanted is None and name == "value_col":
            continue
        if wanted not in names:
            raise ValueError(f"{name}={wanted!r} is not a column of the frame; its columns are "
                             f"{', '.join(map(repr, names))}")
    return from_pairs(column(user_col), column(item_col),
                      None if value_col is None else column(value_col),
                      min_value=min_value, binary=binary, duplicates=duplicates, users=users,
                      items=items, unknown=unknown, source="DataFrame")


def _frame_columns(frame):
    """(column names, name -> 1-D NumPy array) of a frame, read by its own library."""
    library = type(frame).__module__.split(".")[0]
    if library == "dask":
        raise TypeError("frame is a Dask DataFrame: fit it with rgals.dask.DaskALSSolver, "
                        "or call .compute() first to read it here")
    if library == "polars":
        if not hasattr(frame, "get_column"):
            raise TypeError(f"frame is a polars {type(frame).__name__}: call .collect() "
                            "first")
        return list(frame.columns), lambda name: _without_missing(
            frame.get_column(name).to_numpy(), frame.get_column(name).null_count(), name)
    if hasattr(frame, "column_names"):  # pyarrow Table or RecordBatch
        return list(frame.column_names), lambda name: _without_missing(
            frame.column(name).to_numpy(zero_copy_only=False), frame.column(name).null_count,
            name)
    if hasattr(frame, "columns") and hasattr(frame, "isna"):  # pandas
        return list(frame.columns), lambda name: _without_missing(
            frame[name].to_numpy(), int(frame[name].isna().sum()), name)
    if hasattr(frame, "keys") and hasattr(frame, "__getitem__"):
        return list(frame.keys()), lambda name: np.asarray(frame[name])
    raise TypeError("frame must be a pandas or polars DataFrame, a pyarrow Table, or a "
                    f"mapping of column name -> array; got {type(frame).__name__}")


def _without_missing(values, missing, name):
    if missing:
        raise ValueError(f"DataFrame: column {name!r} holds {missing} missing values (None, "
                         "NaN or null); drop or fill them first")
    return values
