"""The tasks of a distributed sweep, run on the workers: pure functions of their
arguments (which they only read, or copy before changing), each the local fit's code on
one block.

`settings` is the executor's dict of solver, cg_steps, cg_tolerance, threads (per task)
and backend: "cpu" (Numba), "gpu" (the worker's CUDA device, one per worker as
dask-cuda arranges it) or "_batched" (NumPy running the GPU's kernels, for tests). A
task puts its inputs on its backend and returns host (NumPy) arrays.
"""

import copy
import dataclasses

import numpy as np

from ..backend import get_backend
from ..metrics import ranking_metrics
from ..monitor import softmax_parts
from ..prepared import RowBlock
from ..solve import (basis_of, check_finite_systems, coupling_change, coupling_part,
                     coupling_shift, resolve_solver, row_bounds, shared_basis, solve_block)
from ..threads import kernel_threads
from .cluster import aligned_empty, concatenate, own
from .layout import global_matrix


def _backend(settings):
    return get_backend(settings["backend"])


def _on(backend, value):
    """`value` (an array, a CSR, a dict or tuple of them, or None; a list: the pieces of
    one array, concatenated) on `backend`."""
    if value is None or np.isscalar(value):
        return value
    if isinstance(value, list):
        return backend.put(concatenate(*value))
    if isinstance(value, dict):
        return {name: _on(backend, item) for name, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_on(backend, item) for item in value)
    return backend.put(own(value) if isinstance(value, np.ndarray) else value)


def _loss_on(loss, backend):
    """The bound loss with its per-row arrays on `backend` (a copy; as is on the host)."""
    if not backend.on_device:
        return loss
    moved = copy.copy(loss)
    for name, value in vars(loss).items():
        if isinstance(value, np.ndarray):
            setattr(moved, name, backend.put(value))
    return moved


def _block_on(part, backend):
    block = part.block
    return RowBlock(block.side, block.rows, _on(backend, block.matrix), block.pairs,
                    _on(backend, block.row_sums))


def statistics(loss, side, fixed, rows, settings):
    """One block of the fixed side's side statistics."""
    backend = _backend(settings)
    with kernel_threads(settings["threads"]):  # BLAS on one thread, as in ALSSolver's fit
        result = _loss_on(loss, backend).side_statistics(side, _on(backend, fixed), rows)
        return {name: backend.get(value) for name, value in result.items()}


def _systems(loss, side, statistics, part, others, pair_terms, backend):
    """The block's RowSystems (`pair_terms`: its pairs' reweighted (c w, g) or None),
    checked as solve_blocks checks them."""
    loss = _loss_on(loss, backend)
    systems = loss.row_systems(side, _on(backend, statistics), _block_on(part, backend),
                               _on(backend, others), _on(backend, pair_terms))
    check_finite_systems(systems)
    return systems


def coupling(loss, side, statistics, part, others, factors, pair_terms, settings):
    """One block's coupling_part of the coupled item step (RGx)."""
    backend = _backend(settings)
    with kernel_threads(settings["threads"]):
        systems = _systems(loss, side, statistics, part, others, pair_terms, backend)
        method, eigen = shared_basis(systems, settings["solver"])
        part = coupling_part(systems, _on(backend, factors), method, backend, eigen)
        return {name: backend.get(value) for name, value in part.items()}


def shift(loss, statistics, parts, method):
    """C sigma of the coupled item step."""
    return coupling_shift(loss.item_coupling(statistics["gram"]), method, parts)


def eigenbasis(loss, side, statistics, settings):
    """The eigenbasis of the half step's shared Gram (computed once for every block)."""
    backend = _backend(settings)
    gram = _loss_on(loss, backend).shared_gram(side, _on(backend, statistics))
    _, eigen = basis_of(gram, "eigen")
    return tuple(backend.get(value) for value in eigen)


def rotate(factors, eigen, settings):
    """One fixed block in the eigenbasis: the blocks rotate in parallel, once a half
    step, for every solved block that reads the whole fixed side."""
    backend = _backend(settings)
    with kernel_threads(settings["threads"]):
        return backend.get(_product(backend, _on(backend, factors), _on(backend, eigen[1])))


def _product(backend, factors, matrix):
    """factors @ matrix in the factors' dtype, on the host aligned as `own` wants it."""
    matrix = matrix.astype(factors.dtype)
    if backend.on_device:
        return factors @ matrix
    return np.matmul(factors, matrix, out=aligned_empty(factors.shape, factors.dtype))


def rotated_side(eigen, *blocks):
    """(the eigenbasis, the whole fixed side in it): what `solve` takes as `rotated`."""
    return eigen, concatenate(*blocks)


def solve(loss, side, statistics, part, others, factors, shift, pair_terms, settings,
          rotated=None):
    """One block's half step: (its new factors, the decrease, the rows' Hessian bounds
    (lowest, highest), the shared Gram's eigenvalues or None, whether the new factors are
    finite). `rotated`: (the shared Gram's eigenbasis, the fixed side this block reads in
    it: the whole side, or the rows it touches, as one array or pieces), rotated once a
    half step for every block (then `others` is not needed: the systems take the rotated
    rows, whose norms are the same)."""
    backend = _backend(settings)
    with kernel_threads(settings["threads"]):
        if rotated is not None:
            eigen, others = rotated
        systems = _systems(loss, side, statistics, part, others, pair_terms, backend)
        if rotated is None:
            method, eigen = shared_basis(systems, settings["solver"])
        else:
            method = resolve_solver(settings["solver"], systems.pair_gram is not None)
            eigen = _on(backend, eigen)
        factors = backend.put(own(factors, copy=True))  # never change inputs
        shift = backend.xp.zeros(factors.shape[1]) if shift is None else _on(backend, shift)
        decrease, curvature = solve_block(
            systems, factors, method, eigen, shift, settings["cg_steps"], backend,
            others_rotated=None if rotated is None else systems.others,
            cg_tolerance=settings["cg_tolerance"])
        if rotated is not None:  # the solution came back in the eigenbasis
            factors = _product(backend, factors, eigen[1].T)
        eigenvalues = None if eigen is None else eigen[0]
        bounds = row_bounds(systems, backend, eigenvalues, curvature)
        finite = bool(backend.xp.isfinite(factors.sum(dtype=np.float64)))
        return (backend.get(factors), decrease, bounds,
                None if eigenvalues is None else backend.get(eigenvalues), finite)


def column_sum(factors):
    return own(factors).sum(axis=0, dtype=np.float64)


def coupling_decrease(loss, statistics, method, before, *sums):
    return coupling_change(loss.item_coupling(statistics["gram"]), method, before["sigma"],
                           sum(sums))


def rows_among_range(factors, start, stop, touched):
    """The rows of one fixed block (ids start..stop-1) among a block's touched ids."""
    lo, hi = np.searchsorted(touched, [start, stop])
    return factors[touched[lo:hi] - start]


# -- the objective and the evaluations ---------------------------------------------------

def objective_side(loss, side, factors, rows, settings):
    backend = _backend(settings)
    part = _loss_on(loss, backend).objective_side(side, _on(backend, factors), rows)
    return {name: backend.get(value) for name, value in part.items()}


def objective_pairs(loss, part, users, others, pair_terms, settings):
    """F's sums over the pairs of one user block (`others`: the item factors its columns
    index)."""
    backend = _backend(settings)
    result = _loss_on(loss, backend).objective_pairs(
        _on(backend, part.block.matrix), _on(backend, users), _on(backend, others),
        _on(backend, pair_terms), backend)
    return {name: backend.get(value) for name, value in result.items()}


def block_metrics(part, users, items, held, K, metrics, evaluated, n_items):
    """(the per-user metrics summed, the users evaluated) of one user block: its rows of
    `held` (global item ids) ranked against every item, its training items masked;
    `evaluated`: the block's rows to evaluate (None: all with held items)."""
    result = ranking_metrics(own(users), own(items), held, global_matrix(part, n_items),
                             K=K, metrics=metrics, users=evaluated)
    count = result.pop("users")
    return {name: value * count for name, value in result.items()}, count


def softmax_part(part, users, items, rows, n_items):
    """(the softmax loss summed, the users counted) of the block's `rows`."""
    return softmax_parts(own(users), own(items), global_matrix(part, n_items), rows)


# -- the top-K weights -------------------------------------------------------------------

def refresh(reweighting, part, users, items, previous, n_items, settings):
    """A user block's rgals.topk.Refresh against every item (host arrays)."""
    backend = _backend(settings)
    with kernel_threads(1):
        result = reweighting.refresh_block(
            _on(backend, users), _on(backend, items),
            _on(backend, global_matrix(part, n_items)), _on(backend, previous), backend)
        return dataclasses.replace(
            result, weights=backend.get(result.weights),
            confidence=backend.get(result.confidence),
            linear=None if result.linear is None else backend.get(result.linear),
            user_sums=backend.get(result.user_sums))


def pair_terms_of(result):
    """(c w, g) of a block's Refresh."""
    return result.confidence, result.linear


def item_pair_positions(part, user_edges):
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


def user_pair_positions(part, *pieces):
    """The item-major position of each of the user block's pairs, in its own order
    (by row, then item: a canonical CSR's)."""
    pieces = [piece for piece in pieces if piece is not None]
    rows, items, positions = (np.concatenate(parts) for parts in zip(*pieces)) if pieces \
        else (np.zeros(0, np.int64),) * 3
    return positions[np.lexsort((items, rows))]


def terms_for_items(terms, positions, item_edges):
    """A user block's (c w, g) as pieces {item block: (positions, c w, g)}."""
    confidence, linear = terms
    blocks = np.searchsorted(item_edges, positions, side="right") - 1
    return {int(block): (positions[blocks == block], confidence[blocks == block],
                         None if linear is None else linear[blocks == block])
            for block in np.unique(blocks)}


def item_terms(start, nnz, *pieces):
    """An item block's (c w, g) in its pairs' order, from the user blocks' pieces."""
    pieces = [piece for piece in pieces if piece is not None]
    confidence = np.zeros(nnz)
    linear = None if not pieces or pieces[0][2] is None else np.zeros(nnz)
    for positions, values, gradient in pieces:
        confidence[positions - start] = values
        if linear is not None:
            linear[positions - start] = gradient
    return confidence, linear


def pair(confidence, gradient):
    return confidence, gradient


def draw(seed, side, block, rows, factors, dtype):
    """A block's initial factors drawn on the worker from (seed, side, block): what a
    fit of data beyond one process starts from (rgals.training.initial_factors' scale)."""
    from ..training import initial_factors
    rng = np.random.default_rng([seed, side, block])
    return initial_factors(rng, rows, factors, dtype)
