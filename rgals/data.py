"""Interaction data: read files into a users x items matrix with id maps, split it, and
generate synthetic data for tests.

Every reader ends in `from_pairs`, which maps the original ids to dense row and column
indices. Integer ids keep their order (ids 0..n-1 map to themselves), string ids are
sorted. To read a test file onto the rows and columns of a training set, pass the training
set's `user_ids` and `item_ids` as `users` and `items`:

    train = rgals.data.read("train.tsv")
    test = rgals.data.read("test.tsv", users=train.user_ids, items=train.item_ids)
    fit_part, validation = rgals.data.validation_split(train.matrix)
"""

import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .files import check_directory, require_files, write_atomic
from .validation import (check_bool, check_choice, check_integer, check_interactions,
                         check_real)

FORMATS = ("auto", "pairs", "lightgcn", "movielens", "mtx", "npz")
DUPLICATES = ("sum", "error")
UNKNOWN = ("error", "drop")
ID_FILES = ("user_ids.npy", "item_ids.npy")

_SEPARATOR_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "::": "'::'", None: "whitespace"}
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

    def save_ids(self, directory, overwrite=False):
        """Write user_ids.npy and item_ids.npy into `directory` (created if needed).

        Strings are saved as a numpy unicode array, so `np.load(..., allow_pickle=False)`
        reads them back; row i of saved factors belongs to `user_ids[i]`.
        """
        directory = check_directory(directory, ID_FILES, overwrite)
        arrays = [_saveable(self.user_ids, "user_ids"), _saveable(self.item_ids, "item_ids")]
        directory.mkdir(parents=True, exist_ok=True)
        for name, array in zip(ID_FILES, arrays):
            write_atomic(directory / name,
                          lambda file, array=array: np.save(file, array, allow_pickle=False))


def _saveable(ids, name):
    array = np.asarray(ids)
    if array.dtype.kind == "O":  # e.g. ids set by hand from a list of strings
        array = array.astype(str)
    if array.ndim != 1 or array.dtype.kind not in "iuUS":
        raise TypeError(f"{name} must be a 1-D array of integers or strings to be saved; got "
                        f"dtype {array.dtype}, shape {array.shape}")
    return array


def load_ids(directory):
    """(user_ids, item_ids) saved by `Interactions.save_ids`."""
    directory = require_files(directory, ID_FILES, "holds no id maps written by "
                              "Interactions.save_ids")
    return tuple(np.load(directory / name, allow_pickle=False) for name in ID_FILES)


# ---------------------------------------------------------------------------------------
# Checks shared by the readers


def _check_options(min_value, binary, duplicates, unknown):
    if min_value is not None and (isinstance(min_value, bool) or not isinstance(
            min_value, numbers.Real) or not np.isfinite(min_value)):
        raise ValueError(f"min_value must be None or a finite number (interactions with a "
                         f"smaller value are dropped); got {min_value!r}")
    check_bool(binary, "binary")
    check_choice(duplicates, "duplicates", DUPLICATES)
    check_choice(unknown, "unknown", UNKNOWN)


def _check_column(value, name, optional=False):
    if value is None and optional:
        return
    ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0) \
        or (isinstance(value, str) and value != "")
    if not ok:
        raise ValueError(f"{name} must be a column position (an integer >= 0) or a column "
                         f"name from the header; got {value!r}")


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
                 ((f"{new_users.size} user ids", new_users),
                  (f"{new_items.size} item ids", new_items)) if ids.size]
        count = int(unseen.sum())
        if unknown == "error":
            raise ValueError(f"{source}: {' and '.join(parts)} were never seen in training; "
                             f"{count} of {total} interactions involve them. Pass "
                             "unknown='drop' to skip those interactions")
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
    """Interactions from a pandas DataFrame (or any mapping of column name -> array).

    Columns are given by name; the options are those of `from_pairs`.
    """
    _check_options(min_value, binary, duplicates, unknown)
    if hasattr(frame, "columns"):
        columns = list(frame.columns)
    elif hasattr(frame, "keys") and hasattr(frame, "__getitem__"):
        columns = list(frame.keys())
    else:
        raise TypeError("frame must be a pandas DataFrame (or a mapping of column name -> "
                        f"array); got {type(frame).__name__}")
    for name, column in (("user_col", user_col), ("item_col", item_col),
                         ("value_col", value_col)):
        if column is None and name == "value_col":
            continue
        if column not in columns:
            raise ValueError(f"{name}={column!r} is not a column of the frame; its columns are "
                             f"{', '.join(map(repr, columns))}")
    return from_pairs(np.asarray(frame[user_col]), np.asarray(frame[item_col]),
                      None if value_col is None else np.asarray(frame[value_col]),
                      min_value=min_value, binary=binary, duplicates=duplicates, users=users,
                      items=items, unknown=unknown, source="DataFrame")


# ---------------------------------------------------------------------------------------
# Files


def read(path, format="auto", *, sep=None, header=None, user_col=0, item_col=1, value_col=None,
         min_value=None, binary=False, duplicates="sum", users=None, items=None,
         unknown="error"):
    """Read an interaction file into Interactions.

    Formats (`format="auto"` picks by name, extension and content):

    - "pairs": delimited text, one interaction per line (.csv, .tsv, .txt, .dat, ...).
      `sep` is detected from the first line (tab, comma, semicolon, '::', else runs of
      whitespace) unless given; a whitespace `sep` means runs of whitespace. Fields are
      stripped; quoting is not supported. `header=None` takes the first line as a header
      when one of its selected fields is a name (no digits, or not a number where a number
      follows) where the second line holds an id or a number; ids that are plain words
      (no digits) under a header need `header=True`. `user_col`, `item_col`, `value_col`
      are positions or header names; without `value_col` every interaction counts 1.
      Blank lines are skipped.
    - "lightgcn": one line per user, `user item item ...` (whitespace separated); a line
      with a user and no items is skipped. Picked for text files (not .csv/.tsv) whose
      lines have varying numbers of fields.
    - "movielens": ratings.dat (`UserID::MovieID::Rating::Timestamp`) or ratings.csv
      (header userId,movieId,rating,...); the value is the rating (`value_col` defaults to
      2). For implicit feedback use `min_value=4, binary=True`.
    - "mtx": Matrix Market (scipy.io.mmread); "npz": scipy.sparse.save_npz. Ids are the row
      and column indices and the shape is the file's.

    The other options are those of `from_pairs`.
    """
    check_choice(format, "format", FORMATS)
    _check_options(min_value, binary, duplicates, unknown)
    if sep is not None and (not isinstance(sep, str) or sep == ""):
        raise ValueError(f"sep must be None (detect it) or a non-empty string; got {sep!r}")
    if sep == "\\t":  # typed as backslash-t on a command line
        sep = "\t"
    if header not in (None, True, False):
        raise ValueError(f"header must be None (detect it), True or False; got {header!r}")
    _check_column(user_col, "user_col")
    _check_column(item_col, "item_col")
    _check_column(value_col, "value_col", optional=True)
    if user_col == item_col:
        raise ValueError(f"user_col and item_col are both {user_col!r}; they must name "
                         "different columns")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or pathlib.Path); got "
                        f"{type(path).__name__}")
    users = _check_reference(users, "users")
    items = _check_reference(items, "items")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        inside = sorted(child.name for child in path.iterdir() if child.is_file())[:5]
        raise IsADirectoryError(f"{path} is a directory; pass the interaction file inside it"
                                + (f" (it holds {', '.join(inside)})" if inside else ""))
    if format == "auto":
        format = _detect_format(path, sep)
    options = dict(min_value=min_value, binary=binary, duplicates=duplicates, users=users,
                   items=items, unknown=unknown, source=str(path))

    if format in ("mtx", "npz", "lightgcn"):
        # a lightgcn file is whitespace separated, so a whitespace `sep` is harmless there
        ignored_sep = format == "lightgcn" and sep is not None and sep.strip() == ""
        given = [f"{name}={value!r}" for name, value, default in
                 (("sep", None if ignored_sep else sep, None), ("header", header, None),
                  ("user_col", user_col, 0), ("item_col", item_col, 1),
                  ("value_col", value_col, None)) if value != default]
        if given:
            raise ValueError(f"{', '.join(given)} do not apply to {format!r} files, which have "
                             "no columns to choose; they are for 'pairs' and 'movielens'")
    if format in ("mtx", "npz"):
        matrix = _read_matrix(path, format)
        if users is None:
            options["users"] = np.arange(matrix.shape[0])
        if items is None:
            options["items"] = np.arange(matrix.shape[1])
        return from_pairs(matrix.row, matrix.col, matrix.data, **options)

    data = path.read_bytes()
    data = _clean_text(data, path)
    if format == "lightgcn":
        user_tokens, item_tokens = _read_lightgcn(data, path)
        return from_pairs(user_tokens, item_tokens, **options)
    if format == "movielens" and value_col is None:
        value_col = 2
    user_tokens, item_tokens, values = _read_delimited(data, path, sep, header, user_col,
                                                       item_col, value_col)
    return from_pairs(user_tokens, item_tokens, values, **options)


def _detect_format(path, sep):
    name = path.name.lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith((".mtx", ".mtx.gz", ".mtx.bz2")):
        return "mtx"
    if name in ("ratings.dat", "ratings.csv"):
        return "movielens"
    with open(path, "rb") as file:
        head = file.read(1 << 16)
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith(b"%%MatrixMarket"):
        return "mtx"
    if _binary(head):
        if head.startswith(b"\x1f\x8b"):
            raise ValueError(f"{path} is gzip-compressed; decompress it first (gunzip). rgals "
                             "reads plain text, .npz and .mtx (also .mtx.gz)")
        raise ValueError(f"cannot tell the format of {path}: its content is binary, not a "
                         "text file of interactions, .npz or .mtx. Pass format= with one of "
                         f"{', '.join(map(repr, FORMATS[1:]))} (for a data frame, e.g. "
                         "parquet, load it with pandas and call rgals.data.from_dataframe)")
    if name.endswith((".csv", ".tsv")) or (sep is not None and sep.strip() != ""):
        return "pairs"
    lines = [line for line in head.split(b"\n")[:1000] if line.strip()]
    if len(head) == 1 << 16 and len(lines) > 1:
        lines = lines[:-1]  # the last line read may be cut off
    if not lines or _separator(lines[0].decode("utf-8", "replace")) is not None:
        return "pairs"
    counts = np.array([len(line.split()) for line in lines])
    # a few malformed lines must not turn a pairs file into an adjacency list: ask for
    # varying counts on a good share of the lines, as adjacency lists have
    if np.unique(counts).size > 1 and np.max(np.bincount(counts)) < 0.9 * counts.size:
        return "lightgcn"
    return "pairs"


def _binary(head):
    """Content that is no text in any encoding (text in a wrong one is reported later)."""
    if b"\0" in head or head.startswith(b"\x1f\x8b"):
        return True
    controls = np.frombuffer(head, dtype=np.uint8)
    controls = (controls < 32) & ~np.isin(controls, (9, 10, 13))
    return controls.sum() > 0.05 * max(len(head), 1)


def _read_matrix(path, format):
    try:
        if format == "npz":
            matrix = sp.load_npz(path)
        else:
            import scipy.io

            matrix = scipy.io.mmread(path)
    except Exception as error:  # the readers raise many types; all mean "not this format"
        kind = "a scipy.sparse .npz file (save_npz)" if format == "npz" else \
            "a Matrix Market file"
        raise ValueError(f"{path} is not {kind}: {error}") from error
    matrix = sp.coo_matrix(matrix)
    if matrix.dtype.kind not in "biuf":
        raise ValueError(f"{path} holds {matrix.dtype} values; interactions must be real "
                         "numbers")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0 or matrix.nnz == 0:
        raise ValueError(f"{path} holds no interactions (shape {matrix.shape}, "
                         f"{matrix.nnz} stored values)")
    return matrix


def _clean_text(data, path):
    """Text bytes without a BOM, with \\n line ends; refuses empty or non-UTF-8 files."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    if not data.strip():
        raise ValueError(f"{path} is empty: no interactions to read")
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise ValueError(f"{path}, line {line}: not UTF-8 text ({error.reason}); convert "
                             "the file to UTF-8") from None
    return data


def _separator(line):
    for sep in ("\t", ",", ";", "::"):
        if sep in line:
            return sep
    return None


def _split(line, sep):
    """Fields of one line (bytes); None separator means runs of whitespace."""
    if sep is None:
        return line.split()
    return [field.strip() for field in line.split(sep)]


def _is_number(field):
    try:
        float(field)
    except ValueError:
        return False
    return True


def _looks_like_name(field):
    return not any(ch.isdigit() for ch in field.decode("utf-8", "replace"))


def _first_lines(data, count):
    """(line number, line, offset of the next line) of the first `count` non-blank lines."""
    found, start, number = [], 0, 0
    while len(found) < count and start <= len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        number += 1
        if data[start:end].strip():
            found.append((number, data[start:end], end + 1))
        start = end + 1
    return found


def _is_header(first, second, positions, value_position):
    """The first line is a header when a selected field is a name above an id or a number."""
    if value_position is not None and value_position < len(first) \
            and not _is_number(first[value_position]):
        return True
    fields = [first[c] for c in positions if c < len(first)]
    if second is None:  # a lone line of names is the header of an empty file
        return bool(fields) and all(not _is_number(f) and _looks_like_name(f) for f in fields)
    for c in positions:
        if c < len(first) and c < len(second) and not _is_number(first[c]):
            if _is_number(second[c]) or (_looks_like_name(first[c])
                                         and not _looks_like_name(second[c])):
                return True
    return False


def _read_delimited(data, path, sep, header, user_col, item_col, value_col):
    """(user tokens, item tokens, values or None) of a delimited text file."""
    head = _first_lines(data, 2)
    if sep is None:
        sep = _separator(head[0][1].decode("utf-8"))
    elif sep.strip() == "":
        sep = None
    sep_bytes = None if sep is None else sep.encode()
    split = [_split(line, sep_bytes) for _, line, _ in head]
    named = [c for c in (user_col, item_col, value_col) if isinstance(c, str)]
    if header is None:
        if named:
            header = True
        else:
            header = _is_header(split[0], split[1] if len(split) > 1 else None,
                                [user_col, item_col] + ([value_col] if value_col is not None
                                                        else []), value_col)
    elif named and not header:
        raise ValueError(f"{path}: columns {', '.join(map(repr, named))} are given by name but "
                         "header=False; pass positions, or header=True if the first line holds "
                         "the column names")

    names = None
    if header:
        names = [field.decode("utf-8") for field in split[0]]
        if len(head) < 2:
            raise ValueError(f"{path} holds a header ({head[0][1].decode()!r}) but no "
                             "interactions")
        header_line, body_start = head[0][0], head[0][2]
        first_number, first_fields = head[1][0], split[1]
    else:
        header_line, body_start = 0, 0
        first_number, first_fields = head[0][0], split[0]
    n_fields = len(first_fields)
    if names is not None and len(names) != n_fields:
        raise ValueError(f"{path}: the header (line {header_line}) has {len(names)} "
                         f"{_SEPARATOR_NAMES[sep]}-separated names but line {first_number} has "
                         f"{n_fields} fields; pass sep= if the separator was guessed wrong")

    positions = []
    for name, column in (("user_col", user_col), ("item_col", item_col),
                         ("value_col", value_col)):
        if column is None:
            positions.append(None)
        elif isinstance(column, str):
            if column not in names:
                raise ValueError(f"{path}: {name}={column!r} is not in the header; its columns "
                                 f"are {', '.join(map(repr, names))}")
            positions.append(names.index(column))
        elif column >= n_fields:
            raise ValueError(f"{path}: {name}={column} is out of range: line {first_number} has "
                             f"{n_fields} {_SEPARATOR_NAMES[sep]}-separated fields "
                             f"({first_fields[0].decode()!r}, ...; columns 0..{n_fields - 1})")
        else:
            positions.append(column)
    if positions[0] == positions[1]:
        raise ValueError(f"{path}: user_col and item_col both select column {positions[0]}")

    body = data[body_start:]
    columns = _fast_columns(body, sep_bytes, n_fields, positions)
    if columns is None:
        # the line-by-line scan is the reference: it reads what the fast path could not
        # and reports the first line it cannot read
        columns = _scan_columns(data, path, sep_bytes, n_fields, positions, header_line)
    return columns


def _whitespace_counts(buffer):
    """Number of whitespace-separated tokens on each \\n-separated line of a byte buffer."""
    newline = buffer == 10
    space = newline | (buffer == 32) | ((buffer >= 9) & (buffer <= 13))
    start = ~space
    start[1:] &= space[:-1]
    starts = np.flatnonzero(start)
    before = np.searchsorted(starts, np.flatnonzero(newline))
    return np.diff(np.concatenate(([0], before, [starts.size])))


def _separators_in_place(buffer, sep, n_fields):
    """Whether every \\n-separated line holds exactly n_fields - 1 separators."""
    hit = buffer[:buffer.size - len(sep) + 1] == sep[0]
    for offset in range(1, len(sep)):
        hit &= buffer[offset:buffer.size - len(sep) + 1 + offset] == sep[offset]
    found = np.flatnonzero(hit)
    ends = np.flatnonzero(buffer == 10)
    n_lines = ends.size + 1
    if found.size != n_lines * (n_fields - 1):
        return False
    # the separators are sorted: if row i of the reshaped positions lies inside line i for
    # every i, every line holds exactly its share
    found = found.reshape(n_lines, n_fields - 1)
    starts = np.concatenate(([0], ends + 1))
    ends = np.concatenate((ends, [buffer.size]))
    return bool(np.all(found[:, 0] >= starts) and np.all(found[:, -1] + len(sep) <= ends))


def _parse_numbers(text, dtype, count):
    """All whitespace-separated numbers of `text`, or None unless there are exactly `count`."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            numbers_ = np.fromstring(text, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    if numbers_.size != count:
        return None
    if dtype == np.int64 and numbers_.size and (
            numbers_.max() == np.iinfo(np.int64).max or numbers_.min() == np.iinfo(np.int64).min):
        return None  # fromstring saturates on overflow
    return numbers_


def _fast_columns(body, sep, n_fields, positions):
    """The vectorised reader of a well-formed file; None when it cannot vouch for the result."""
    body = body.strip()
    buffer = np.frombuffer(body, dtype=np.uint8)
    if sep is None:
        counts = _whitespace_counts(buffer)
        if not np.all((counts == 0) | (counts == n_fields)):
            return None
        count = int(counts.sum())
        numeric_text = body
    else:
        if b"\n\n" in body or not _separators_in_place(buffer, sep, n_fields):
            return None
        count = (body.count(b"\n") + 1) * n_fields
        # the numbers stand for the fields only when no field holds whitespace
        space = (buffer == 32) | ((buffer >= 9) & (buffer <= 13) & (buffer != 10))
        if sep == b"\t":
            space &= buffer != 9
        numeric_text = None if space.any() else body.replace(sep, b" ")

    if numeric_text is not None:
        numbers_ = _parse_numbers(numeric_text, np.int64, count)
        if numbers_ is None:
            numbers_ = _parse_numbers(numeric_text, np.float64, count)
        if numbers_ is not None:
            table = numbers_.reshape(-1, n_fields)
            result = [_integral(table[:, c]) for c in positions[:2]]
            value = None if positions[2] is None else table[:, positions[2]].astype(np.float64)
            if all(r is not None for r in result) and \
                    (value is None or np.all(np.isfinite(value))):
                return result[0], result[1], value

    tokens = body.split() if sep is None else body.replace(sep, b"\n").split(b"\n")
    if len(tokens) != count:
        return None
    result = []
    for c in positions[:2]:
        column = np.array(tokens[c::n_fields])
        if sep is not None:
            column = np.char.strip(column)
        if np.any(column == b""):
            return None
        result.append(_id_column(column))
    value = None
    if positions[2] is not None:
        try:
            value = np.array(tokens[positions[2]::n_fields]).astype(np.float64)
        except ValueError:
            return None
        if not np.all(np.isfinite(value)):
            return None
    return result[0], result[1], value


def _integral(column):
    """An int64 copy of a numeric id column, or None when some id is not an integer."""
    if column.dtype.kind == "i":
        return column
    if np.all(np.isfinite(column)) and np.all(column == np.round(column)) and \
            np.all(np.abs(column) < 2.0 ** 53):
        return column.astype(np.int64)
    return None


def _id_column(tokens):
    """Ids from an array of byte strings: int64 when every one is an integer, else text."""
    try:
        return tokens.astype(np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        result = _integral(tokens.astype(np.float64))
        if result is not None:
            return result
    except (ValueError, OverflowError):
        pass
    return _decode(tokens)


def _decode(tokens):
    try:
        return tokens.astype(str)  # ASCII, the usual case: a cast, much faster than decode
    except UnicodeDecodeError:
        return np.char.decode(tokens, "utf-8")


def _scan_columns(data, path, sep, n_fields, positions, header_line):
    """The line-by-line reader: the same result as the fast path, or the first bad line."""
    user_position, item_position, value_position = positions
    users, items, values = [], [], []

    def fail(number, line, problem):
        shown = line.decode("utf-8", "replace")
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        raise ValueError(f"{path}, line {number}: {problem}: {shown!r}")

    for number, line in enumerate(data.split(b"\n"), start=1):
        if number <= header_line or not line.strip():
            continue
        fields = _split(line, sep)
        if len(fields) != n_fields:
            fail(number, line, f"expected {n_fields} {_SEPARATOR_NAMES[_text(sep)]}-separated "
                               f"fields, found {len(fields)}")
        for position, what, store in ((user_position, "user id", users),
                                      (item_position, "item id", items)):
            if not fields[position]:
                fail(number, line, f"empty {what} (field {position})")
            store.append(fields[position])
        if value_position is not None:
            field = fields[value_position]
            try:
                value = float(field)
            except ValueError:
                value = None
            if value is None:
                fail(number, line, f"value {field.decode('utf-8', 'replace')!r} (field "
                                   f"{value_position}) is not a number")
            if not np.isfinite(value):
                fail(number, line, f"value {field.decode('utf-8', 'replace')!r} (field "
                                   f"{value_position}) is not a finite number")
            values.append(value)
    if not users:
        raise ValueError(f"{path} holds no interactions")
    return (_id_column(np.array(users)), _id_column(np.array(items)),
            np.array(values, dtype=np.float64) if value_position is not None else None)


def _text(sep):
    return None if sep is None else sep.decode()


def _read_lightgcn(data, path):
    """(user tokens, item tokens) of a `user item item ...` file."""
    body = data.strip()
    counts = _whitespace_counts(np.frombuffer(body, dtype=np.uint8))
    total = int(counts.sum())
    tokens = _parse_numbers(body, np.int64, total)
    if tokens is None:
        tokens = np.array(body.split())
    first = np.cumsum(counts) - counts  # index of each line's first token
    listed = counts > 0
    is_user = np.zeros(total, dtype=bool)
    is_user[first[listed]] = True
    user_tokens = np.repeat(tokens[first[listed]], counts[listed] - 1)
    item_tokens = tokens[~is_user]
    if item_tokens.size == 0:
        raise ValueError(f"{path} lists users but no items: no interactions (a lightgcn line "
                         "is `user item item ...`)")
    if tokens.dtype.kind == "S":
        return _id_column(user_tokens), _id_column(item_tokens)
    return user_tokens, item_tokens


# ---------------------------------------------------------------------------------------
# Splits


def _check_seed(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(check_integer(seed, "seed", 0))


def _check_ratio(ratio):
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio < 1:
        raise ValueError(f"ratio must be a number between 0 and 1 (exclusive), the share of "
                         f"each user's interactions to hold out; got {ratio!r}")
    return float(ratio)


def _split_matrix(matrix, held_out, rng, what):
    """(kept, held out): `held_out(n_u)` random interactions of each user go to the second."""
    matrix = check_interactions(matrix, name="matrix", allow_negative=True)
    per_user = np.diff(matrix.indptr)
    n_held = held_out(per_user)
    if not np.any(n_held):
        raise ValueError(f"{what} holds nothing out: no user has at least 2 interactions "
                         "(every user keeps at least one in training)")
    rows = np.repeat(np.arange(matrix.shape[0]), per_user)
    # rank each interaction by a random key within its user; the lowest ranks are held out
    order = np.lexsort((rng.random(matrix.nnz), rows))
    rank = np.empty(matrix.nnz, dtype=np.int64)
    rank[order] = np.arange(matrix.nnz) - matrix.indptr[rows[order]]
    test = rank < n_held[rows]
    return _subset(matrix, rows, ~test), _subset(matrix, rows, test)


def _subset(matrix, rows, keep):
    indptr = np.concatenate(([0], np.cumsum(np.bincount(rows[keep],
                                                        minlength=matrix.shape[0]))))
    return sp.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)


def holdout_split(matrix, ratio=0.2, seed=0):
    """(train, test): round(ratio * n_u) random interactions of each user go to test.

    Rounding is half up; a user with n_u >= 2 holds out at least one and keeps at least
    one, a user with one interaction keeps it in train. Values are kept; train + test is
    the input. Deterministic for a seed.
    """
    ratio = _check_ratio(ratio)
    rng = _check_seed(seed)

    def held_out(n):
        wanted = np.floor(ratio * n + 0.5).astype(np.int64)
        return np.clip(wanted, (n >= 2).astype(np.int64), np.maximum(n - 1, 0))

    return _split_matrix(matrix, held_out, rng, f"holdout_split(ratio={ratio})")


def leave_k_out(matrix, k=1, seed=0):
    """(train, test): k random interactions of each user go to test; a user with n_u <= k
    holds out n_u - 1 (at least one stays in train)."""
    k = check_integer(k, "k", 1)
    rng = _check_seed(seed)
    return _split_matrix(matrix, lambda n: np.minimum(k, np.maximum(n - 1, 0)), rng,
                         f"leave_k_out(k={k})")


def validation_split(train, ratio=0.1, seed=0):
    """(fit_part, validation): DESIGN's model-selection split of the training matrix,
    `holdout_split` with 10% of each user's training interactions (at least one)."""
    return holdout_split(train, ratio=ratio, seed=seed)


# ---------------------------------------------------------------------------------------
# Synthetic data

_SIGNAL = 2.0  # standard deviation of the planted scores: strong enough to be learnt
_CHUNK = 1 << 20  # user x item keys drawn at a time (4 MB of float32)


def synthetic(n_users=1000, n_items=500, factors=8, mean_activity=20.0, popularity_exponent=1.0,
              seed=0):
    """A random users x items CSR matrix of ones with a planted low-rank structure.

    Item popularity follows a power law (popularity of the item ranked r is
    r^-popularity_exponent, ranks shuffled over the ids); user activity is heavy-tailed
    (2 + lognormal, mean about `mean_activity`, at most n_items). Each user draws its items
    without replacement with probability proportional to popularity * exp(p_u . q_i), with
    random `factors`-dimensional p_u, q_i (scores of standard deviation 2). Deterministic
    for a seed; users are drawn in chunks, so memory stays bounded.
    """
    n_users = check_integer(n_users, "n_users", 1)
    n_items = check_integer(n_items, "n_items", 2)
    factors = check_integer(factors, "factors", 1)
    mean_activity = check_real(mean_activity, "mean_activity", 2)
    if mean_activity > n_items:
        raise ValueError(f"mean_activity={mean_activity} exceeds n_items={n_items}: a user "
                         "cannot interact with more items than there are")
    popularity_exponent = check_real(popularity_exponent, "popularity_exponent", 0)
    rng = np.random.default_rng(check_integer(seed, "seed", 0))

    log_popularity = -popularity_exponent * np.log(rng.permutation(n_items) + 1.0)
    scale = (_SIGNAL ** 2 / factors) ** 0.25  # var(p . q) = factors * scale^4
    user_vectors = rng.standard_normal((n_users, factors)) * scale
    item_vectors = rng.standard_normal((n_items, factors)) * scale
    extra = mean_activity - 2.0
    if extra > 0:
        activity = 2 + np.round(rng.lognormal(np.log(extra) - 0.5, 1.0, n_users))
    else:
        activity = np.full(n_users, 2.0)
    activity = np.minimum(activity, n_items).astype(np.int64)

    # float32 keys: the draw is O(n_users * n_items) and this halves its cost
    item_vectors = item_vectors.T.astype(np.float32)
    log_popularity = log_popularity.astype(np.float32)
    chosen = []
    chunk = max(1, _CHUNK // n_items)
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        # Gumbel top-k: the k largest of log(weight) + Gumbel noise are a draw of k items
        # without replacement with probability proportional to weight
        keys = user_vectors[start:stop].astype(np.float32) @ item_vectors
        keys += log_popularity
        noise = rng.random(keys.shape, dtype=np.float32)
        with np.errstate(divide="ignore"):  # a draw of exactly 0 or 1 gives an infinite key
            np.log(noise, out=noise)
            np.negative(noise, out=noise)
            np.log(noise, out=noise)
        keys -= noise
        wanted = activity[start:stop]
        top = int(wanted.max())
        best = np.argpartition(-keys, top - 1, axis=1)[:, :top] if top < n_items else \
            np.broadcast_to(np.arange(n_items), keys.shape)
        best = np.take_along_axis(
            best, np.argsort(-np.take_along_axis(keys, best, axis=1), axis=1), axis=1)
        chosen.append(best[np.arange(top) < wanted[:, None]])
    indptr = np.concatenate(([0], np.cumsum(activity)))
    matrix = sp.csr_matrix((np.ones(int(activity.sum())), np.concatenate(chosen), indptr),
                           shape=(n_users, n_items))
    matrix.sort_indices()
    return matrix
