"""Input checks that run before any kernel: every problem gets a message saying how to fix it."""

import numbers
import math
import warnings

import numpy as np
import scipy.sparse as sp


def check_interactions(matrix, name="user_items", allow_negative=False, shape=None,
                       loss_name=None, allow_empty=False):
    """Validate an interaction matrix and return it as canonical CSR (float64 values).

    Canonical: a private copy with sorted indices, duplicates summed and explicit zeros
    dropped. allow_empty: rows without any interaction are fine (rows to filter or fold
    in); otherwise a matrix needs one.
    """
    if isinstance(matrix, np.ndarray) or isinstance(matrix, np.matrix):
        if np.ndim(matrix) != 2:
            raise ValueError(f"{name} must be 2-D (rows x columns); got an array of shape "
                             f"{np.shape(matrix)}")
        check_numeric(np.asarray(matrix).dtype, name)
        matrix = sp.csr_matrix(matrix)
        warnings.warn(f"{name} is a dense numpy array; converted it to a scipy.sparse CSR "
                      f"matrix with {matrix.nnz} stored values. Pass a sparse matrix to "
                      "avoid the copy.", stacklevel=3)
    elif not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy.sparse matrix or array (CSR, CSC or COO) of "
                        f"shape (rows, columns) holding confidence values; got "
                        f"{type(matrix).__name__}")
    if len(matrix.shape) != 2:
        raise ValueError(f"{name} must be 2-D (rows x columns); got shape {matrix.shape}")
    check_numeric(matrix.dtype, name)
    if shape is not None and tuple(matrix.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {matrix.shape}; expected {tuple(shape)}")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {matrix.shape}); it needs at least one row "
                         "and one column")

    matrix = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    matrix.sum_duplicates()
    _check_values(matrix, name, allow_negative, loss_name, allow_empty)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


def check_value_range(value_range, dtype, weight=1.0, name="user_items", weight_name=None):
    """Refuse values whose squares (times the loss's pair `weight`) leave the range of
    `dtype` inside the solvers: CG squares its residuals, which grow with the values, and
    an overflow there gives a fit that stops after one sweep and ranks at random.
    `value_range`: (smallest, largest) |value| stored (InteractionTotals.value_range),
    None with no values. `weight_name`: the hyperparameter the weight comes from (e.g.
    "alpha=1e+38"), blamed when the values alone would fit."""
    if value_range is None:
        return
    dtype = np.dtype(dtype)
    largest = float(value_range[1])
    # sqrt of the type's range, less 4 digits for the sums over a row's pairs and factors
    room = math.sqrt(float(np.finfo(dtype).max)) / 1e4
    limit = room / weight
    if largest > limit and weight_name is not None and largest <= room:
        raise ValueError(f"{weight_name} is too large for {dtype.name} factors: the pair "
                         f"weights it gives (about {weight:.3g} times each value, values up "
                         f"to {largest:.3g}) overflow inside the solvers, and the fit would "
                         f"rank at random. Keep it below {room / largest:.3g}")
    if largest > limit:
        wider = " or use dtype=np.float64" if dtype == np.float32 else ""
        raise ValueError(f"{name} holds values up to {largest:.3g}: with {dtype.name} "
                         f"factors and this loss, values above {limit:.3g} overflow inside "
                         "the solvers (squared residuals pass the type's range) and the fit "
                         "would rank at random. Rescale the values (divide by their mean, or "
                         f"take np.log1p){wider}")
    # the other end: when every value is tiny, the loss's weights and the item
    # regularisation (sums of values over the catalogue) underflow to zero
    floor = math.sqrt(float(np.finfo(dtype).tiny))
    if largest < floor:
        wider = " or use dtype=np.float64" if dtype == np.float32 else ""
        raise ValueError(f"{name} holds values only up to {largest:.3g}: with {dtype.name} "
                         f"factors, values that all stay below {floor:.3g} make the loss's "
                         "weights underflow to zero inside the solvers. Rescale the values "
                         f"(divide by their mean){wider}")


def check_numeric(dtype, name, what="confidence values"):
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or \
            np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers ({what}); got dtype {dtype}")


def _first_position(matrix, mask):
    k = int(np.flatnonzero(mask)[0])
    row = int(np.searchsorted(matrix.indptr, k, side="right") - 1)
    return row, int(matrix.indices[k])


def _check_values(matrix, name, allow_negative, loss_name, allow_empty):
    bad = ~np.isfinite(matrix.data)
    if bad.any():
        row, column = _first_position(matrix, bad)
        raise ValueError(f"{name} holds {int(bad.sum())} NaN or infinite values (the first at "
                         f"row {row}, column {column}); drop or replace them")
    negative = matrix.data < 0
    if negative.any() and not allow_negative:
        row, column = _first_position(matrix, negative)
        raise ValueError(f"{name} holds {int(negative.sum())} negative values (the first at row "
                         f"{row}, column {column}); loss {loss_name!r} takes confidences >= 0. "
                         "Clip or drop them, or use loss='ials', which reads negative values as "
                         "negative feedback")
    if not allow_empty and not np.any(matrix.data != 0):
        raise ValueError(f"{name} has no interactions (no nonzero values)")


def check_ids(ids, upper, name):
    """Integer ids (scalar or 1-D) in [0, upper); returns a 1-D int64 array."""
    array = np.asarray(ids)
    if array.ndim > 1:
        raise ValueError(f"{name} must be an integer or a 1-D array of integers; got shape "
                         f"{array.shape}")
    if array.dtype == object and array.size and all(
            isinstance(value, numbers.Integral) and not isinstance(value, bool)
            for value in array.ravel()):
        # Python ints beyond int64 (numpy keeps them as objects): no id can be that large
        raise IndexError(f"{name} {max(array.ravel(), key=abs)} is out of range: ids are "
                         "row numbers of the model, 0 <= id < its rows")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be integers; got dtype {array.dtype}")
    if array.dtype == np.uint64 and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise IndexError(f"{name} {int(array.max())} is out of range: ids are row numbers "
                         "of the model, 0 <= id < its rows")
    array = array.astype(np.int64).ravel()
    if upper is None and array.size and array.min() < 0:
        raise IndexError(f"{name} {int(array.min())} is out of range: ids are row numbers, "
                         ">= 0")
    if upper is not None and array.size:
        outside = (array < 0) | (array >= upper)
        if outside.any():
            raise IndexError(f"{name} {int(array[outside][0])} is out of range: the model has "
                             f"{upper} (valid ids 0..{upper - 1}); {int(outside.sum())} ids are "
                             "outside")
    return array


def check_integer(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_real(value, name, minimum, strict=False):
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and np.isfinite(value) and (value > minimum if strict else value >= minimum))
    if not ok:
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {relation} {minimum}; got {value!r}")
    return float(value)


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; use one of {', '.join(map(repr, choices))}")
    return value


def random_generator(random_state):
    """A numpy Generator from a `random_state` parameter (None, an int, a Generator or a
    legacy RandomState), or a clear error."""
    random_state = check_random_state(random_state)
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2 ** 31))
    return np.random.default_rng(random_state)


def check_random_state(random_state, name="random_state"):
    """`random_state` when numpy can seed a Generator from it (drawing nothing from it)."""
    if isinstance(random_state, (np.random.RandomState, np.random.Generator,
                                 np.random.BitGenerator, np.random.SeedSequence)):
        return random_state
    try:
        np.random.default_rng(random_state)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be None, an int or a numpy Generator; got "
                         f"{random_state!r}") from error
    return random_state
