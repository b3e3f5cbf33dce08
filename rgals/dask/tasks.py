"""The tasks of a distributed half step (run on the workers; pure functions of their
arguments, which they copy before use)."""

import copy
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..als import _thread_limit
from ..backend import get_backend
from ..prepared import RowBlock
from ..solve import (coupling_change, coupling_part, coupling_shift, resolve_solver,
                     shared_basis, solve_block)
from .cluster import own
from .layout import global_matrix


def _statistics(loss, side, fixed, rows, threads):
    with _thread_limit(threads):  # BLAS on one thread, as in ALSSolver's fit
        return loss.side_statistics(side, own(fixed), rows)


def _systems(loss, side, statistics, part, others, frozen=None):
    """The block's RowSystems; `frozen`: its pairs' (c w, g) of the top-K weights."""
    block = part.block
    if frozen is not None:
        loss = copy.copy(loss)
        loss.frozen = {side: frozen}
        block = RowBlock(block.side, block.rows, block.matrix,
                         slice(0, block.matrix.nnz), block.row_sums)
    return loss.row_systems(side, statistics, block, own(others))


def _coupling(loss, side, statistics, part, others, factors, solver, threads, frozen):
    with _thread_limit(threads):
        systems = _systems(loss, side, statistics, part, others, frozen)
        method, eigen = shared_basis(systems, solver)
        return coupling_part(systems, own(factors), method, get_backend("cpu"), eigen)


def _coupling_shift(loss, statistics, parts, method):
    """C sigma of the coupled item step."""
    return coupling_shift(loss.item_coupling(statistics["gram"]), method, parts)


def _method(loss, side, factors, solver):
    """The method `solver` stands for on `side`'s systems: it depends only on whether
    pairs carry a Gram weight, which the systems of an empty block say."""
    statistics = {"gram": np.eye(factors), "sum": np.zeros(factors)}
    empty = RowBlock(side, slice(0, 0), sp.csr_matrix((0, 1)), slice(0, 0), np.zeros(0))
    return resolve_solver(solver, loss.row_systems(side, statistics, empty,
                                                   np.zeros((1, factors))))


def _solve(loss, side, statistics, part, others, factors, shift, solver, cg_steps,
           cg_tolerance, threads, frozen):
    """(the block's new factors, the decrease) of one block's half step."""
    with _thread_limit(threads):
        systems = _systems(loss, side, statistics, part, others, frozen)
        method, eigen = shared_basis(systems, solver)
        factors = own(factors)  # a task never changes its inputs
        if shift is None:
            shift = np.zeros(factors.shape[1])
        decrease, _ = solve_block(systems, factors, method, eigen, shift, cg_steps,
                                  get_backend("cpu"), cg_tolerance=cg_tolerance)
        return factors, decrease


def _item_pair_positions(part, user_edges):
    """For each user block: (its local rows, item ids, item-major positions) of this item
    block's pairs."""
    matrix = global_matrix(part)
    items = part.block.rows.start + np.repeat(np.arange(matrix.shape[0]),
                                              np.diff(matrix.indptr))
    users = matrix.indices.astype(np.int64)
    positions = part.block.pairs.start + np.arange(matrix.nnz)
    blocks = np.searchsorted(user_edges, users, side="right") - 1
    return {int(block): (users[blocks == block] - user_edges[block], items[blocks == block],
                         positions[blocks == block]) for block in np.unique(blocks)}


def _user_pair_positions(part, *pieces):
    """The item-major position of each of the user block's pairs, in its own order
    (by row, then item: a canonical CSR's)."""
    pieces = [piece for piece in pieces if piece is not None]
    rows, items, positions = (np.concatenate(parts) for parts in zip(*pieces)) if pieces \
        else (np.zeros(0, np.int64),) * 3
    return positions[np.lexsort((items, rows))]


def _top_k_block(loss, part, users, items, previous, sweep):
    """A user block's refreshed top-K weights (damped by `previous`), its pairs' c w and
    g (or None), and its rows' summed c w (RG2.begin_sweep on one block)."""
    with _thread_limit(1):
        matrix = global_matrix(part)
        block_loss = copy.copy(loss)
        block_loss.n_users, block_loss._sweeps = matrix.shape[0], sweep
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        data = _BlockData(get_backend("cpu"), matrix)
        weights, linear = block_loss._top_k_weights(own(users), own(items), data, rows)
        if previous is not None:
            weights = loss.top_k_damping * previous + (1.0 - loss.top_k_damping) * weights
        confidence = matrix.data * weights
        sums = np.bincount(rows, weights=confidence, minlength=matrix.shape[0])
        return weights, (confidence, linear), sums


@dataclass
class _BlockData:
    """What RG2's top-K weights read of PreparedData, for one user block."""

    backend: object
    user_items: object


def _frozen_for_items(frozen, positions, item_edges):
    """A user block's (c w, g) as pieces {item block: (positions, c w, g)}."""
    confidence, linear = frozen
    blocks = np.searchsorted(item_edges, positions, side="right") - 1
    return {int(block): (positions[blocks == block], confidence[blocks == block],
                         None if linear is None else linear[blocks == block])
            for block in np.unique(blocks)}


def _item_frozen(start, nnz, *pieces):
    """An item block's (c w, g) in its pairs' order, from the user blocks' pieces."""
    pieces = [piece for piece in pieces if piece is not None]
    confidence = np.zeros(nnz)
    linear = None if not pieces or pieces[0][2] is None else np.zeros(nnz)
    for positions, values, gradient in pieces:
        confidence[positions - start] = values
        if linear is not None:
            linear[positions - start] = gradient
    return confidence, linear


def _column_sum(factors):
    return own(factors).sum(axis=0, dtype=np.float64)


def _coupling_decrease(loss, statistics, method, before, *sums):
    return coupling_change(loss.item_coupling(statistics["gram"]), method, before["sigma"],
                           sum(sums))


def _frozen_pair(confidence, gradient):
    return confidence, gradient


def _rows_among_range(factors, start, stop, touched):
    """The rows of one fixed block (ids start..stop-1) among a block's touched ids."""
    lo, hi = np.searchsorted(touched, [start, stop])
    return factors[touched[lo:hi] - start]
