"""Splits of an interaction matrix: holdout, leave-k-out and the validation split."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from ..validation import check_integer, check_interactions
from ..types import Matrix, Seed


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


def holdout_split(matrix: Matrix, ratio: float = 0.2, seed: Seed = 0) -> tuple:
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


def leave_k_out(matrix: Matrix, k: int = 1, seed: Seed = 0) -> tuple:
    """(train, test): k random interactions of each user go to test; a user with n_u <= k
    holds out n_u - 1 (at least one stays in train)."""
    k = check_integer(k, "k", 1)
    rng = _check_seed(seed)
    return _split_matrix(matrix, lambda n: np.minimum(k, np.maximum(n - 1, 0)), rng,
                         f"leave_k_out(k={k})")


def validation_split(train: Matrix, ratio: float = 0.1, seed: Seed = 0) -> tuple:
    """(fit_part, validation): design.md's model-selection split of the training matrix,
    `holdout_split` with 10% of each user's training interactions (at least one)."""
    return holdout_split(train, ratio=ratio, seed=seed)

