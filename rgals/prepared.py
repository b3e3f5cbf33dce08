"""Interactions prepared once per fit: both orientations on the backend, and row blocks.

A tuner refits many times on the same `PreparedData`; the Dask mode hands each worker
`RowBlock`s of it. Nothing here depends on a loss.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .backend import array_module


@dataclass
class RowBlock:
    """Rows `rows` of one side: their interactions and where their pairs sit.

    `matrix` holds the block's rows (values are the confidences c), `pairs` the positions
    of its stored pairs in that side's order (None for rows from outside the prepared
    data, e.g. users to fold in), `row_sums` n_r = sum of the row's values.
    """

    side: str
    rows: slice
    matrix: object  # scipy.sparse (or cupyx) CSR, rows x the other side
    pairs: object  # slice, or None
    row_sums: object

    @classmethod
    def of(cls, matrix, side):
        """One block holding every row of `matrix` (e.g. the rows of users to fold in)."""
        return cls(side, slice(0, matrix.shape[0]), matrix, None, row_sums(matrix))


@dataclass
class PreparedData:
    """A validated users x items matrix in both orientations, on one backend.

    `item_order[k]` is the position in user-major order of the k-th stored pair in
    item-major order, so a per-pair array `v` computed user-major reads `v[item_order]`
    item-major (`in_order`).
    """

    user_items: object
    item_users: object
    item_order: object
    user_sums: object
    item_sums: object
    backend: object
    host_user_items: sp.csr_matrix

    @property
    def shape(self):
        return self.host_user_items.shape

    def matrix(self, side):
        return self.user_items if side == "user" else self.item_users

    def in_order(self, side, user_major):
        """A per-pair array given in user-major order, in the order of `side`'s pairs."""
        return user_major if side == "user" else user_major[self.item_order]

    def blocks(self, side, n_blocks=1):
        """`side`'s rows as `n_blocks` contiguous RowBlocks (n_blocks=1: no copy)."""
        matrix = self.matrix(side)
        sums = self.user_sums if side == "user" else self.item_sums
        ranges = row_ranges(matrix.shape[0], n_blocks)
        if len(ranges) == 1:
            return [RowBlock(side, ranges[0], matrix, slice(0, matrix.nnz), sums)]
        indptr = self.backend.get(matrix.indptr)
        return [RowBlock(side, rows, matrix[rows],
                         slice(int(indptr[rows.start]), int(indptr[rows.stop])), sums[rows])
                for rows in ranges]


def row_ranges(n_rows, n_blocks):
    """`n_blocks` contiguous slices covering rows 0..n_rows-1 (fewer if rows are few)."""
    n_blocks = max(1, min(n_blocks, n_rows))
    edges = [block * n_rows // n_blocks for block in range(n_blocks + 1)]
    return [slice(start, stop) for start, stop in zip(edges[:-1], edges[1:])]


def row_sums(matrix):
    """n_r = sum of each row's stored values, in float64, in the matrix's array library."""
    return array_module(matrix).asarray(matrix.sum(axis=1), dtype=np.float64).ravel()


@dataclass
class InteractionTotals:
    """Per-user and per-item totals of a users x items matrix: what the losses' constants,
    cold rows and popularity need of the training data, so a model can be kept without
    the matrix (`ALSSolver.save(..., interactions=False)`).

    counts: stored pairs per row; sums: their values summed (float64); value_range:
    (smallest, largest) |value| stored, None with no values. A model loaded from
    `implicit`'s file knows none of them (`unknown`): every field but shape is None.
    """

    shape: tuple
    user_counts: object = None
    user_sums: object = None
    item_counts: object = None
    item_sums: object = None
    value_range: tuple = None

    FIELDS = ("user_counts", "user_sums", "item_counts", "item_sums")

    @classmethod
    def of(cls, user_items):
        """The totals of a canonical CSR (SciPy or CuPy), in its array library."""
        xp = array_module(user_items)
        n_items = user_items.shape[1]
        values = abs(user_items.data)
        return cls(
            shape=tuple(user_items.shape),
            user_counts=xp.diff(user_items.indptr).astype(np.int64),
            user_sums=row_sums(user_items),
            item_counts=xp.bincount(user_items.indices, minlength=n_items).astype(np.int64),
            item_sums=xp.bincount(user_items.indices, weights=user_items.data.astype(
                np.float64), minlength=n_items).astype(np.float64),
            value_range=(float(values.min()), float(values.max())) if values.size else None)

    @classmethod
    def unknown(cls, shape):
        return cls(shape=tuple(shape))

    @property
    def known(self):
        return self.user_counts is not None


def prepare(user_items, backend):
    """PreparedData of a checked, canonical users x items CSR (rgals.validation)."""
    order = sp.csr_matrix((np.arange(user_items.nnz, dtype=np.int64), user_items.indices,
                           user_items.indptr), shape=user_items.shape)
    by_item = order.T.tocsr()
    by_item.sort_indices()
    item_order = by_item.data
    item_users = sp.csr_matrix((user_items.data[item_order], by_item.indices, by_item.indptr),
                               shape=by_item.shape)
    put = backend.put
    return PreparedData(
        user_items=put(user_items), item_users=put(item_users), item_order=put(item_order),
        user_sums=put(row_sums(user_items)), item_sums=put(row_sums(item_users)),
        backend=backend, host_user_items=user_items)
