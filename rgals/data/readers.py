"""Reading interaction files: `read` parses pairs, LightGCN, MovieLens, mtx and npz files
into Interactions (through `from_pairs`)."""

import numbers
import os
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..validation import check_bool, check_choice
from .interactions import _check_options, _check_reference, _decode, from_pairs

FORMATS = ("auto", "pairs", "lightgcn", "movielens", "mtx", "npz")

_SEPARATOR_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "::": "'::'", None: "whitespace"}


def _check_column(value, name, optional=False):
    if value is None and optional:
        return
    ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0) \
        or (isinstance(value, str) and value != "")
    if not ok:
        raise ValueError(f"{name} must be a column position (an integer >= 0) or a column "
                         f"name from the header; got {value!r}")


def read(path, format="auto", *, sep=None, header=None, user_col=0, item_col=1, value_col=None,
         min_value=None, binary=False, duplicates="sum", users=None, items=None,
         unknown="error", string_ids=False):
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
      Blank lines are skipped. An id column whose ids are all integers is read as
      integers; one that mixes integers and other text (`17` beside `x17` or `1.5`) is an
      error naming the line, since a stray value would otherwise turn every id into text
      and reorder them; `string_ids=True` reads every id as text.
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
    check_bool(string_ids, "string_ids")
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
        if string_ids and format != "lightgcn":
            raise ValueError(f"string_ids=True does not apply to {format!r} files: their ids "
                             "are the matrix's row and column numbers")
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
        user_tokens, item_tokens = _read_lightgcn(data, path, string_ids)
        return from_pairs(user_tokens, item_tokens, **options)
    if format == "movielens" and value_col is None:
        value_col = 2
    user_tokens, item_tokens, values = _read_delimited(data, path, sep, header, user_col,
                                                       item_col, value_col, string_ids)
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


def _read_delimited(data, path, sep, header, user_col, item_col, value_col, string_ids):
    """(user tokens, item tokens, values or None) of a delimited text file."""
    head = _first_lines(data, 2)
    if sep is None:
        sep = _separator(head[0][1].decode("utf-8"))
    elif sep.strip() == "":
        sep = None
    sep_bytes = None if sep is None else sep.encode()
    split = [_split(line, sep_bytes) for _, line, _ in head]
    named = [c for c in (user_col, item_col, value_col) if isinstance(c, str)]
    detected = header is None
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
    columns = _fast_columns(body, sep_bytes, n_fields, positions, string_ids)
    if columns is None:
        # the line-by-line scan is the reference: it reads what the fast path could not
        # and reports the first line it cannot read
        columns = _scan_columns(data, path, sep_bytes, n_fields, positions, header_line,
                                string_ids)
    if detected and not header:
        _warn_if_header(path, head[0], split[0], positions, columns)
    return columns


def _warn_if_header(path, first_line, first, positions, columns):
    """A first line of names whose ids occur nowhere else was probably a header over word
    ids, which detection cannot tell from data: say so (header= decides)."""
    if not all(_looks_like_name(first[position]) for position in positions[:2]):
        return
    if all(int((column == column[0]).sum()) == 1 for column in columns[:2]):
        shown = first_line[1].decode("utf-8", "replace")
        warnings.warn(f"{path}, line {first_line[0]} ({shown!r}) was read as an interaction, "
                      "but its ids occur nowhere else in the file: if it is a header, pass "
                      "header=True (--header yes); header=False reads it as data without "
                      "this warning", UserWarning, stacklevel=4)


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


def _fast_columns(body, sep, n_fields, positions, string_ids=False):
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

    if numeric_text is not None and not string_ids:
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
        try:
            result.append(_id_column(column, string_ids))
        except _MixedIds:
            return None  # the scan names the line
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
    if np.all(_whole(column)):
        return column.astype(np.int64)
    return None


def _whole(numbers):
    """Which of these floats are integers an id can be (exact in float64)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(numbers) & (numbers == np.round(numbers)) & \
            (np.abs(numbers) < 2.0 ** 53)


class _MixedIds(ValueError):
    """An id column mixing integers with other text; `index`: the first other one."""

    def __init__(self, index):
        super().__init__(index)
        self.index = index


def _id_column(tokens, string_ids=False):
    """Ids from an array of byte strings: int64 when every one is an integer, text when
    none is (or with string_ids); a mix raises _MixedIds."""
    if string_ids:
        return _decode(tokens)
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
    unique, inverse = np.unique(tokens, return_inverse=True)
    integer = np.array([_is_integer(token) for token in unique])
    if integer.any():
        raise _MixedIds(int(np.flatnonzero(~integer[inverse.ravel()])[0]))
    return _decode(tokens)


def _is_integer(token):
    try:
        number = float(token)
    except ValueError:
        return False
    return bool(_whole(np.float64(number)))


def _scan_columns(data, path, sep, n_fields, positions, header_line, string_ids=False):
    """The line-by-line reader: the same result as the fast path, or the first bad line."""
    user_position, item_position, value_position = positions
    users, items, values, lines = [], [], [], []

    def fail(number, line, problem):
        shown = line.decode("utf-8", "replace")
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        raise ValueError(f"{path}, line {number}: {problem}: {shown!r}")

    for number, line in enumerate(data.split(b"\n"), start=1):
        if number <= header_line or not line.strip():
            continue
        fields = _split(line, sep)
        lines.append((number, line))
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
    columns = []
    for tokens, what, position in ((users, "user id", user_position),
                                   (items, "item id", item_position)):
        try:
            columns.append(_id_column(np.array(tokens), string_ids))
        except _MixedIds as mixed:
            number, line = lines[mixed.index]
            fail(number, line, f"{what} {tokens[mixed.index].decode('utf-8', 'replace')!r} "
                               f"(field {position}) is not an integer, while other ids of "
                               "that column are; fix the line, or pass string_ids=True "
                               "(--string-ids) to read every id as text")
    return (*columns, np.array(values, dtype=np.float64) if value_position is not None else None)


def _text(sep):
    return None if sep is None else sep.decode()


def _read_lightgcn(data, path, string_ids=False):
    """(user tokens, item tokens) of a `user item item ...` file."""
    body = data.strip()
    counts = _whitespace_counts(np.frombuffer(body, dtype=np.uint8))
    total = int(counts.sum())
    tokens = None if string_ids else _parse_numbers(body, np.int64, total)
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
        ids = []
        for column, what in ((user_tokens, "user"), (item_tokens, "item")):
            try:
                ids.append(_id_column(column, string_ids))
            except _MixedIds as mixed:
                token = column[mixed.index].decode("utf-8", "replace")
                raise ValueError(f"{path}: {what} id {token!r} is not an integer, while "
                                 f"other {what} ids are (lightgcn files list integer ids; "
                                 "for a pairs file with a header use format='pairs'); fix "
                                 "it, or pass string_ids=True (--string-ids) to read every id "
                                 "as text") from None
        return tuple(ids)
    return user_tokens, item_tokens
