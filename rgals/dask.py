"""DaskALSSolver: ALSSolver's fit on a Dask cluster, for data beyond one machine.

Layout as Spark's ALS (DESIGN 6): the interactions are shuffled once into user-row
blocks and item-row blocks (both orientations), kept on the workers; the factors are
partitioned by the same blocks. A half step is the one of `rgals.training.half_step`:
each block of the fixed side computes its side statistics, a tree-sum reduces them, and
each block of the solved side builds its row systems and solves them (RGx's coupled item
step takes one more reduction, of the blocks' `coupling_part`s). The fixed side's
factors travel whole while they take at most `broadcast_bytes`; otherwise each block
receives only the rows its interactions touch (Spark's out-blocks). Tasks are pure, in a
fixed order, and retried; no task is pinned to a worker. The factors equal ALSSolver's
from the same seed up to summation order.

Needs the `dask` extra: pip install 'rgals[dask]'.
"""

import copy
import json
import operator
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from .als import CG_TOLERANCE, ALSSolver, _generator, _initial_factors, _thread_limit
from .backend import get_backend
from .files import check_directory, prepare_directory, write_atomic
from .prepared import InteractionTotals, RowBlock, prepare, row_ranges
from .solve import (add_statistics, coupling_change, coupling_part, coupling_shift,
                    resolve_solver, shared_basis, solve_block)
from .validation import check_integer, check_interactions

try:
    import distributed
except ImportError:  # the extra is optional; DaskALSSolver says how to install it
    distributed = None

WORKERLESS_SECONDS = 60.0  # a fit fails once the cluster has had no worker this long
MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint.json"
SIDES = ("user", "item")
RETRIES = 3
BROADCAST_BYTES = 64 * 2 ** 20
LOCAL_BYTES = 2 ** 30  # save() also writes the plain model below this many factor bytes


def _require_dask():
    if distributed is None:
        raise ImportError("the Dask mode needs dask and distributed: "
                          "pip install 'rgals[dask]'")


@dataclass
class _Block:
    """One block of one side on a worker: its RowBlock (columns are positions in
    `touched` when set, else ids of the other side) and the other side's ids it uses."""

    block: RowBlock
    touched: object = None  # sorted ids of the other side, or None (columns are ids)


# -- tasks (run on the workers; pure functions of their arguments) ----------------------

def _value(value):
    """A value held as a task's result rather than scattered: a worker that dies with it
    takes nothing the scheduler cannot compute again."""
    return value


def _statistics(loss, side, fixed, rows, threads):
    with _thread_limit(threads):  # BLAS on one thread, as in ALSSolver's fit
        return loss.side_statistics(side, _own(fixed), rows)


def _sum(*parts):
    return add_statistics(parts)


def _concatenate(*arrays):
    return np.concatenate(arrays)


def _systems(loss, side, statistics, part, others, frozen=None):
    """The block's RowSystems; `frozen`: its pairs' (c w, g) of the top-K weights."""
    block = part.block
    if frozen is not None:
        loss = copy.copy(loss)
        loss.frozen = {side: frozen}
        block = RowBlock(block.side, block.rows, block.matrix,
                         slice(0, block.matrix.nnz), block.row_sums)
    return loss.row_systems(side, statistics, block, _own(others))


def _own(array):
    """A fresh copy of an array that may have come over the network: without it two
    runs of one float32 fit differed by 1e-6 (measured; likely the buffer's alignment
    sending BLAS down other code paths)."""
    return np.array(array, order="C", copy=True)


def _coupling(loss, side, statistics, part, others, factors, solver, threads, frozen):
    with _thread_limit(threads):
        systems = _systems(loss, side, statistics, part, others, frozen)
        method, eigen = shared_basis(systems, solver)
        return coupling_part(systems, _own(factors), method, get_backend("cpu"), eigen)


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
        factors = _own(factors)  # a task never changes its inputs
        if shift is None:
            shift = np.zeros(factors.shape[1])
        decrease, _ = solve_block(systems, factors, method, eigen, shift, cg_steps,
                                  get_backend("cpu"), cg_tolerance=cg_tolerance)
        return factors, decrease


def _global_matrix(part, n_columns=None):
    """The block's matrix with the other side's ids as columns (`n_columns`: its width,
    None: up to the largest id it touches)."""
    matrix = part.block.matrix
    if part.touched is None:
        return matrix
    if n_columns is None:
        n_columns = int(part.touched.max(initial=-1)) + 1
    return sp.csr_matrix((matrix.data, part.touched[matrix.indices], matrix.indptr),
                         shape=(matrix.shape[0], n_columns))


def _item_pair_positions(part, user_edges):
    """For each user block: (its local rows, item ids, item-major positions) of this item
    block's pairs."""
    matrix = _global_matrix(part)
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
        matrix = _global_matrix(part)
        block_loss = copy.copy(loss)
        block_loss.n_users, block_loss._sweeps = matrix.shape[0], sweep
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        data = _BlockData(get_backend("cpu"), matrix)
        weights, linear = block_loss._top_k_weights(_own(users), _own(items), data, rows)
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
    return _own(factors).sum(axis=0, dtype=np.float64)


def _coupling_decrease(loss, statistics, method, before, *sums):
    return coupling_change(loss.item_coupling(statistics["gram"]), method, before["sigma"],
                           sum(sums))


def _write_block(array, path):
    write_atomic(path, lambda file: np.save(file, array, allow_pickle=False))
    return str(path)


def _read_block(path, shape, dtype):
    array = np.load(path, allow_pickle=False)
    if array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
        raise ValueError(f"{path} holds a {array.dtype} array of shape {array.shape}; the "
                         f"checkpoint says {np.dtype(dtype)} {tuple(shape)}")
    return array


def _split(frame, user_col, item_col, value_col, user_edges, item_edges):
    """One partition's pairs as {(side, block): (rows, columns, values)}, rows in the
    block's own numbering."""
    users = frame[user_col].to_numpy(dtype=np.int64)
    items = frame[item_col].to_numpy(dtype=np.int64)
    values = (np.ones(len(frame)) if value_col is None
              else frame[value_col].to_numpy(dtype=np.float64))
    pieces = {}
    for side, rows, columns, edges in (("user", users, items, user_edges),
                                       ("item", items, users, item_edges)):
        blocks = np.searchsorted(edges, rows, side="right") - 1
        for block in np.unique(blocks):
            mine = blocks == block
            pieces[side, int(block)] = (rows[mine] - edges[block], columns[mine], values[mine])
    return pieces


def _piece(pieces, key):
    return pieces.get(key)


def _partition_summary(frame, user_col, item_col, value_col):
    """What the checks and the shape need of one partition."""
    summary = {"pairs": len(frame)}
    for name in (user_col, item_col):
        column = frame[name]
        summary[name] = (int(column.min()), int(column.max())) if len(frame) else None
        summary[f"{name} nulls"] = int(column.isna().sum())
    if value_col is not None:
        values = frame[value_col].to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(values)
        summary["nonfinite"] = int((~finite).sum())
        summary["negative"] = int((values[finite] < 0).sum())
    return summary


def _build(side, rows, n_columns, *pieces):
    """A block's RowBlock from its pieces: canonical CSR (duplicates summed, zeros
    dropped, float64 values), rows in the block's numbering."""
    pieces = [piece for piece in pieces if piece is not None]
    n_rows = rows.stop - rows.start
    if pieces:
        row, column, value = (np.concatenate(parts) for parts in zip(*pieces))
    else:
        row = column = np.zeros(0, np.int64)
        value = np.zeros(0)
    matrix = sp.csr_matrix((value, (row, column)), shape=(n_rows, n_columns))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return _Block(RowBlock(side, rows, matrix, slice(0, matrix.nnz),
                           np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()))


def _nnz(part):
    return part.block.matrix.nnz


def _with_offset(part, offset):
    block = part.block
    return _Block(RowBlock(block.side, block.rows, block.matrix,
                           slice(offset, offset + block.matrix.nnz), block.row_sums))


def _localised(part):
    """The block with its columns renumbered to the other side's ids it touches."""
    matrix = part.block.matrix
    touched, local = np.unique(matrix.indices, return_inverse=True)
    renumbered = sp.csr_matrix((matrix.data, local.astype(matrix.indices.dtype),
                                matrix.indptr), shape=(matrix.shape[0], len(touched)))
    return _Block(RowBlock(part.block.side, part.block.rows, renumbered, part.block.pairs,
                           part.block.row_sums), touched)


def _touched(part):
    return part.touched


def _pairs(part):
    return part.block.pairs


def _frozen_pair(confidence, gradient):
    return confidence, gradient


def _block_totals(part):
    """(counts, sums, (smallest, largest |value|) or None) of one block's rows."""
    matrix = part.block.matrix
    values = abs(matrix.data)
    return (np.diff(matrix.indptr).astype(np.int64), part.block.row_sums,
            (float(values.min()), float(values.max())) if values.size else None)


def _synthetic_partition(users, items, candidates, seed):
    """The pairs of users `users` (a range) of `synthetic_frame`, as a pandas DataFrame;
    `items`: planted_items' arguments (each partition draws the items from the seed
    again rather than taking them through the graph)."""
    import pandas as pd
    from .data.synthetic import planted_items
    planted = planted_items(**items, seed=seed)
    planted.draw_items(planted.rng)
    indptr, chosen = planted.draw_users(np.random.default_rng([seed, users.start]),
                                        len(users), candidates)
    rows = np.repeat(np.arange(users.start, users.stop), np.diff(indptr))
    return pd.DataFrame({"user": rows.astype(np.int64), "item": chosen.astype(np.int64)})


def synthetic_frame(n_users, n_items, factors=8, mean_activity=20.0, popularity_exponent=1.0,
                    seed=0, candidates=8, partitions=None):
    """`rgals.data.synthetic(..., candidates=...)` as a Dask DataFrame (user, item) whose
    partitions the workers draw themselves: the items from `seed`, each partition's users
    from (seed, its first user). The same pairs for the same arguments; not the same as
    the in-memory draw's (other streams). partitions: None, one per 100,000 users."""
    _require_dask()
    import dask.dataframe as dd
    import pandas as pd
    from .data.synthetic import planted_items
    n_users = check_integer(n_users, "n_users", 1)
    partitions = check_integer(partitions or max(1, n_users // 100_000), "partitions", 1)
    items = dict(n_items=n_items, factors=factors, mean_activity=mean_activity,
                 popularity_exponent=popularity_exponent)
    planted_items(**items, seed=seed)  # bad arguments fail here, not in a worker
    check_integer(candidates, "candidates", 1)
    ranges = [range(rows.start, rows.stop) for rows in row_ranges(n_users, partitions)]
    meta = pd.DataFrame({"user": np.zeros(0, np.int64), "item": np.zeros(0, np.int64)})
    return dd.from_map(_synthetic_partition, ranges, items=items, candidates=candidates,
                       seed=seed, meta=meta, enforce_metadata=False)


# -- the estimator -----------------------------------------------------------------------

class DaskALSSolver(ALSSolver):
    """ALSSolver's fit on a Dask cluster: the same model from the same seed.

    Parameters: those of ALSSolver (the fit runs `iterations` sweeps of the CPU kernels
    on the workers; `num_threads` is per task, 1 by default, so that a worker's threads
    solve blocks side by side; `tol` is 0: every sweep runs), and
    client : distributed.Client or None
        The cluster (None: the current client, `distributed.get_client()`).
    user_blocks, item_blocks : int or None
        Row blocks per side (None: twice the workers' threads). Blocks are contiguous
        ranges of ids; more blocks than rows leaves the extra ones out.
    broadcast_bytes : int
        The fixed side's factors travel whole to every block while they take at most
        this many bytes; above it each block receives only the rows it touches.
    checkpoint_every : int
        Every this many sweeps the factors are written to `checkpoint_dir` (0: never);
        `fit(..., resume=checkpoint_dir)` continues from the last complete one.
    checkpoint_dir : str, Path or None
        Where checkpoints go: a directory every worker can write (shared storage).

    Top-K weights (RG2/RGx `top_k`) are refreshed per user block: scores against the
    whole item side, the weights kept per block for damping, the pairs' c w shuffled to
    the item blocks, the refreshed user sums sent with the loss.

    Not in the Dask mode (yet): backend="gpu", validation data, early stopping, tol > 0
    (they need the distributed objective), the softmax monitor, and the regularization
    path (give `regularization`; rgals.tune on a sample finds one).

    Attributes after fit: `user_factors_` and `item_factors_` (Dask arrays, one chunk a
    block), `loss_`, `interaction_totals_`, `history_` (per sweep: the half steps'
    decreases and seconds). `to_local()` gathers an ALSSolver; `save(directory)` writes
    the blocks.
    """

    def __init__(self, factors=64, loss="rg2", alpha=None, regularization=None,
                 reg_exponent=None, iterations=15, solver="auto", cg_steps=3,
                 cg_tolerance=CG_TOLERANCE, dtype=np.float32, backend="cpu", num_threads=1,
                 random_state=None, tol=0.0, early_stopping=False, patience=3,
                 validation_metric="ndcg@20", eval_every=1, softmax_users=0,
                 monitor="sweep", client=None, user_blocks=None, item_blocks=None,
                 broadcast_bytes=BROADCAST_BYTES, checkpoint_every=0, checkpoint_dir=None):
        super().__init__(factors=factors, loss=loss, alpha=alpha,
                         regularization=regularization, reg_exponent=reg_exponent,
                         iterations=iterations, solver=solver, cg_steps=cg_steps,
                         cg_tolerance=cg_tolerance, dtype=dtype, backend=backend,
                         num_threads=num_threads, random_state=random_state, tol=tol,
                         early_stopping=early_stopping, patience=patience,
                         validation_metric=validation_metric, eval_every=eval_every,
                         softmax_users=softmax_users, monitor=monitor)
        self.client = client
        self.user_blocks = user_blocks
        self.item_blocks = item_blocks
        self.broadcast_bytes = broadcast_bytes
        self.checkpoint_every = checkpoint_every
        self.checkpoint_dir = checkpoint_dir

    def _validated_params(self):
        params = super()._validated_params()
        unsupported = [(name, value) for name, value, default in (
            ("backend", self.backend, "cpu"), ("early_stopping", self.early_stopping, False),
            ("tol", self.tol, 0.0), ("softmax_users", self.softmax_users, 0),
            ("monitor", self.monitor, "sweep")) if value != default]
        if unsupported:
            name, value = unsupported[0]
            raise ValueError(f"DaskALSSolver does not support {name}={value!r} yet; fit "
                             "with ALSSolver for it, or leave it at its default")
        declared = params["loss"].hyperparameters.get("regularization")
        if declared is not None and declared.from_data and params["loss"].regularization is None:
            raise ValueError("DaskALSSolver needs regularization= (the single-machine "
                             "default chooses it on a holdout path, which the Dask mode does "
                             "not run): give a value, e.g. from rgals.tune on a sample")
        for name in ("user_blocks", "item_blocks"):
            if getattr(self, name) is not None:
                check_integer(getattr(self, name), name, 1)
        params["broadcast_bytes"] = check_integer(self.broadcast_bytes, "broadcast_bytes", 0)
        params["checkpoint_every"] = check_integer(self.checkpoint_every,
                                                   "checkpoint_every", 0)
        if params["checkpoint_every"] and self.checkpoint_dir is None:
            raise ValueError("checkpoint_every needs checkpoint_dir: a directory every "
                             "worker can write")
        return params

    def _client(self):
        _require_dask()
        if self.client is not None:
            return self.client
        try:
            return distributed.get_client()
        except ValueError as error:
            raise ValueError("DaskALSSolver needs a Dask client: pass client=, or start "
                             "one first (distributed.Client(...))") from error

    # -- fitting -------------------------------------------------------------------------

    def fit(self, interactions, user_col="user", item_col="item", value_col="value",
            resume=None, show_progress=True, callback=None):
        """Fit to `interactions`: a scipy.sparse users x items matrix (partitioned here)
        or a Dask DataFrame with integer `user_col` and `item_col` ids (an id's row is
        the id itself; gaps are rows without interactions, so ids should be dense: the
        factors have max id + 1 rows) and, when present,
        `value_col` (else every pair counts 1). `resume`: a checkpoint directory to
        continue from (the same data, parameters and blocks). `callback(iteration,
        elapsed, record)` runs after each sweep with its record of `history_`;
        returning False stops the fit. Returns self."""
        params = self._validated_params()
        client = self._client()
        workers = max(1, sum(client.nthreads().values()))
        shape, parts, user_items = _layout(client, interactions, params["loss"],
                                           self.user_blocks or 2 * workers,
                                           self.item_blocks or 2 * workers,
                                           user_col, item_col, value_col)
        totals = _totals(client, parts, shape)
        if totals.user_counts.sum() == 0:
            raise ValueError("the interactions are empty: nothing to fit")
        spec = params["loss"].resolve(_ShapeOnly(shape))
        loss = spec.bind(totals)
        d, dtype = params["factors"], params["dtype"]
        fixed_bytes = {side: shape[other] * d * np.dtype(dtype).itemsize
                       for side, other in (("user", 1), ("item", 0))}
        # a side whose fixed side does not travel whole gets blocks with local columns
        for side in SIDES:
            if fixed_bytes[side] > params["broadcast_bytes"]:
                parts[side] = [client.submit(_localised, part, retries=RETRIES)
                               for part in parts[side]]
        ranges = {side: row_ranges(shape[index], len(parts[side]))
                  for index, side in enumerate(SIDES)}
        start_sweep, state, top_k = 0, None, None
        if resume is not None:
            start_sweep, state, top_k = _read_checkpoint(client, resume, shape, ranges, d,
                                                         dtype, loss)
        if state is None:
            rng = _generator(self.random_state)
            # the start ALSSolver draws: users, then items, on the client
            state = {}
            for side, index in (("user", 0), ("item", 1)):
                initial = _initial_factors(rng, shape[index], d, dtype)
                state[side] = [client.submit(_value, initial[rows]) for rows in ranges[side]]
            state["previous"] = state["item"]
        history, started = [], time.perf_counter()
        fit = _Fit(client, loss, parts, ranges, params, fixed_bytes, totals)
        if top_k is not None:
            fit.restore_top_k(*top_k)
        sweeps = range(start_sweep + 1, params["iterations"] + 1)
        for sweep in tqdm(sweeps, disable=not show_progress, unit="sweep",
                          desc=f"rgals {loss.name} on Dask"):
            record = {"sweep": sweep}
            fit.begin_sweep(state)
            state["previous"] = state["item"]
            for side in SIDES:
                started = time.perf_counter()
                state[side], decrease = fit.half_step(side, state)
                record[f"{side}_decrease"] = decrease
                record[f"{side}_seconds"] = time.perf_counter() - started
            history.append(record)
            if params["checkpoint_every"] and (sweep % params["checkpoint_every"] == 0
                                               or sweep == params["iterations"]):
                # the fit goes on from the files: a lost block is read again, not
                # recomputed from every sweep before (the graph stays bounded)
                state, top_k = _write_checkpoint(client, self.checkpoint_dir, sweep, state,
                                                 ranges, shape, d, dtype, loss,
                                                 fit.top_k_state())
                if top_k is not None:
                    fit.restore_top_k(*top_k)
            if callback is not None and callback(sweep - 1, time.perf_counter() - started,
                                                 record) is False:
                break
        self._ranges = ranges
        self._blocks = state
        self._client_used = client
        self.user_factors_ = _dask_array(state["user"], ranges["user"], d, dtype)
        self.item_factors_ = _dask_array(state["item"], ranges["item"], d, dtype)
        self.previous_item_factors_ = _dask_array(state["previous"], ranges["item"], d,
                                                  dtype)
        self.interaction_totals_ = totals
        self.loss_ = loss
        self.user_items_ = user_items
        self._parts = parts
        self.history_ = history
        return self

    # -- results -------------------------------------------------------------------------

    def to_local(self, interactions=True):
        """The fitted model as an ALSSolver (factors gathered to this process; with
        `interactions`, the training matrix too, for `recommend`'s filtering)."""
        self._check_fitted()
        client = self._client_used
        params = {name: value for name, value in self.get_params().items()
                  if name in ALSSolver._param_names()}
        params.update(backend="cpu", tol=0.0)
        model = ALSSolver(**params)
        model.user_factors_, model.item_factors_, model.previous_item_factors_ = (
            np.concatenate(_gather(client, self._blocks[side]))
            for side in ("user", "item", "previous"))
        user_items = self.user_items_
        if interactions and user_items is None:
            user_items = _gather_matrix(client, self._parts["user"], self.interaction_totals_)
        model.user_items_ = user_items if interactions else None
        model.interaction_totals_ = self.interaction_totals_
        model.loss_ = self.loss_
        model.regularization_path_ = None
        return model

    def save(self, directory, overwrite=False, local=None):
        """Write one .npy per block and side (written by the workers: `directory` must
        be storage they share) and manifest.json, last; with `local` (None: when the
        factors take at most 1 GiB) also the plain model `rgals.load` reads
        (user_factors.npy, item_factors.npy, ...: ALSSolver.save)."""
        self._check_fitted()
        d, dtype = self.user_factors_.shape[1], self.user_factors_.dtype
        files = {side: [f"blocks/{side}-{k:05d}.npy" for k in range(len(rows))]
                 for side, rows in (("user", self._ranges["user"]),
                                    ("item", self._ranges["item"]),
                                    ("previous", self._ranges["item"]))}
        names = [MANIFEST] + [name for group in files.values() for name in group]
        directory = prepare_directory(directory, names, overwrite, marker=MANIFEST)
        size = (self.user_factors_.shape[0] + self.item_factors_.shape[0]) * d * dtype.itemsize
        local = size <= LOCAL_BYTES if local is None else local
        if local:  # before any block: an existing plain model is checked first
            from .export import ALL_FILES, MARKER
            check_directory(directory, ALL_FILES, overwrite, marker=MARKER)
        (directory / "blocks").mkdir(exist_ok=True)
        _write_blocks(self._client_used, directory, files, self._blocks)
        manifest = _manifest(self, files)
        write_atomic(directory / MANIFEST,
                     lambda file: file.write(json.dumps(manifest, indent=2).encode() + b"\n"))
        if local:
            self.to_local(interactions=self.user_items_ is not None).save(
                directory, overwrite=overwrite, interactions=self.user_items_ is not None)


class _ShapeOnly:
    """What RG2.resolve needs for alpha alone: the shape."""

    def __init__(self, shape):
        self.shape = shape


class _Fit:
    """The half steps of one distributed fit; `loss` is the bound loss, scattered."""

    def __init__(self, client, loss, parts, ranges, params, fixed_bytes, totals):
        self.client, self.parts, self.ranges = client, parts, ranges
        self.pair_counts = {side: [int(counts[rows].sum()) for rows in ranges[side]]
                            for side, counts in (("user", totals.user_counts),
                                                 ("item", totals.item_counts))}
        self.params, self.fixed_bytes = params, fixed_bytes
        self.loss = client.submit(_value, loss)
        self.methods = {side: _method(loss, side, params["factors"], params["solver"])
                        for side in SIDES}
        self.coupled = getattr(loss, "item_coupling", lambda gram: None)(
            np.eye(params["factors"])) is not None
        self.touched = {side: [self.submit(_touched, part) for part in parts[side]]
                        for side in SIDES}
        # top-K weights: the loss refreshed on the client (its counter and user sums),
        # each block's (c w, g) and weights on the workers
        self.bound = copy.copy(loss)
        self.frozen = {side: [None] * len(parts[side]) for side in SIDES}
        self.weights = [None] * len(parts["user"])
        if getattr(loss, "top_k", None) is not None:
            self._pair_positions()

    def submit(self, function, *args):
        return self.client.submit(function, *args, retries=RETRIES)

    def _pair_positions(self):
        """Each user block's pairs' item-major positions, and the item blocks' first."""
        user_edges = np.array([rows.start for rows in self.ranges["user"]]
                              + [self.ranges["user"][-1].stop])
        by_item = [self.submit(_item_pair_positions, part, user_edges)
                   for part in self.parts["item"]]
        self.positions = [
            self.submit(_user_pair_positions, part,
                        *[self.submit(_piece, pieces, k) for pieces in by_item])
            for k, part in enumerate(self.parts["user"])]
        slices = _gather(self.client, [self.submit(_pairs, part) for part in self.parts["item"]])
        self.item_pairs = slices
        self.item_edges = np.array([pairs.start for pairs in slices] + [slices[-1].stop])

    def top_k_state(self):
        """What a checkpoint keeps of the top-K weights: (the refresh counter and whether
        weights exist, {name: block futures}, {name: block lengths}, the user sums), or
        None without them."""
        if getattr(self.bound, "top_k", None) is None:
            return None
        meta = {"sweeps": self.bound._sweeps, "refreshed": self.weights[0] is not None}
        arrays, lengths = {}, {}
        if meta["refreshed"]:
            arrays["weights"], lengths["weights"] = self.weights, self.pair_counts["user"]
            parts = [0, 1] if self.bound.top_k_gradient else [0]
            for side in SIDES:
                for index, name in zip(parts, ("confidence", "gradient")):
                    arrays[f"{side}_{name}"] = [self.submit(operator.getitem, frozen, index)
                                                for frozen in self.frozen[side]]
                    lengths[f"{side}_{name}"] = self.pair_counts[side]
        return meta, arrays, lengths, self.bound.user_sums if meta["refreshed"] else None

    def restore_top_k(self, meta, arrays, user_sums):
        """The top-K state a checkpoint kept (see `top_k_state`)."""
        self.bound = copy.copy(self.bound)
        self.bound._sweeps = meta["sweeps"]
        if meta["refreshed"]:
            self.weights = arrays["weights"]
            for side in SIDES:
                gradients = arrays.get(f"{side}_gradient", [None] * len(self.parts[side]))
                self.frozen[side] = [self.submit(_frozen_pair, confidence, gradient)
                                     for confidence, gradient in
                                     zip(arrays[f"{side}_confidence"], gradients)]
            self.bound._set_user_sums(user_sums)
        self.loss = self.client.submit(_value, self.bound)

    def begin_sweep(self, state):
        """RG2.begin_sweep across the blocks: every `top_k_refresh` sweeps after the
        warm-up, the weights from the current factors."""
        loss = self.bound
        if getattr(loss, "top_k", None) is None:
            return
        loss._sweeps += 1
        if loss._sweeps <= loss.top_k_warmup or \
                (loss._sweeps - 1 - loss.top_k_warmup) % loss.top_k_refresh:
            return
        items = self.submit(_concatenate, *state["item"])
        refreshed = [self.submit(_top_k_block, self.loss, part, users, items, previous,
                                 loss._sweeps)
                     for part, users, previous in zip(self.parts["user"], state["user"],
                                                      self.weights)]
        self.weights = [self.submit(operator.getitem, result, 0) for result in refreshed]
        self.frozen["user"] = [self.submit(operator.getitem, result, 1)
                               for result in refreshed]
        sums = _gather(self.client, [self.submit(operator.getitem, result, 2)
                                     for result in refreshed])
        pieces = [self.submit(_frozen_for_items, frozen, positions, self.item_edges)
                  for frozen, positions in zip(self.frozen["user"], self.positions)]
        self.frozen["item"] = [
            self.submit(_item_frozen, pairs.start, pairs.stop - pairs.start,
                        *[self.submit(_piece, piece, k) for piece in pieces])
            for k, pairs in enumerate(self.item_pairs)]
        loss = copy.copy(loss)
        loss._set_user_sums(np.concatenate(sums))
        self.bound = loss
        self.loss = self.client.submit(_value, loss)

    def half_step(self, side, state):
        """Solve `side`'s blocks given the other side's; returns (new blocks, decrease)."""
        fixed = "item" if side == "user" else "user"
        params = self.params
        statistics = _tree_sum(self, [
            self.submit(_statistics, self.loss, side, factors, rows, params["num_threads"])
            for factors, rows in zip(state[fixed], self.ranges[fixed])])
        others = self.others(side, fixed, state[fixed])
        threads = params["num_threads"]
        shift = None
        coupled = side == "item" and self.coupled
        if coupled:
            before = _tree_sum(self, [
                self.submit(_coupling, self.loss, side, statistics, part, other, factors,
                            params["solver"], threads, frozen)
                for part, other, factors, frozen in zip(self.parts[side], others, state[side],
                                                        self.frozen[side])])
            shift = self.submit(_coupling_shift, self.loss, statistics, before,
                                self.methods[side])
        solved = [self.submit(_solve, self.loss, side, statistics, part, other, factors,
                              shift, params["solver"], params["cg_steps"],
                              params["cg_tolerance"], threads, frozen)
                  for part, other, factors, frozen in zip(self.parts[side], others,
                                                          state[side], self.frozen[side])]
        blocks = [self.submit(operator.getitem, result, 0) for result in solved]
        decreases = [self.submit(operator.getitem, result, 1) for result in solved]
        decrease = float(sum(_gather(self.client, decreases)))
        if coupled:
            sums = [self.submit(_column_sum, block) for block in blocks]
            decrease += _gather(self.client, [self.submit(
                _coupling_decrease, self.loss, statistics, self.methods[side], before,
                *sums)])[0]
        return blocks, decrease

    def others(self, side, fixed, fixed_blocks):
        """Per block of `side`: the fixed side's factors it reads (whole, or its rows)."""
        if self.fixed_bytes[side] <= self.params["broadcast_bytes"]:
            whole = self.submit(_concatenate, *fixed_blocks)
            return [whole] * len(self.parts[side])
        result = []
        for touched in self.touched[side]:
            pieces = [self.submit(_rows_among_range, block, rows.start, rows.stop, touched)
                      for block, rows in zip(fixed_blocks, self.ranges[fixed])]
            result.append(self.submit(_concatenate, *pieces))
        return result


def _rows_among_range(factors, start, stop, touched):
    """The rows of one fixed block (ids start..stop-1) among a block's touched ids."""
    lo, hi = np.searchsorted(touched, [start, stop])
    return factors[touched[lo:hi] - start]


def _gather(client, futures):
    """client.gather, failing with a clear error (instead of waiting for ever) once the
    cluster has had no worker for WORKERLESS_SECONDS."""
    futures = list(futures)
    alone_since = None
    while True:
        try:
            distributed.wait(futures, timeout=1.0)
            return client.gather(futures)
        except distributed.TimeoutError:
            if client.scheduler_info().get("workers"):
                alone_since = None
                continue
            alone_since = alone_since or time.perf_counter()
            if time.perf_counter() - alone_since > WORKERLESS_SECONDS:
                raise RuntimeError(
                    f"the Dask cluster has had no worker for {WORKERLESS_SECONDS:g} s, so "
                    "the fit cannot go on; start workers (or a cluster that keeps them) "
                    "and fit again, with resume= its checkpoint_dir to keep the sweeps "
                    "done") from None


def _tree_sum(fit, futures):
    """A binary tree of sums (the reduction of a half step)."""
    while len(futures) > 1:
        futures = [fit.submit(_sum, *futures[k:k + 2]) for k in range(0, len(futures), 2)]
    return futures[0]


def _dask_array(blocks, ranges, d, dtype):
    import dask.array as da
    return da.concatenate([da.from_delayed(block, shape=(rows.stop - rows.start, d),
                                           dtype=dtype)
                           for block, rows in zip(blocks, ranges)])


def _layout(client, interactions, loss, user_blocks, item_blocks, user_col, item_col,
            value_col):
    """(shape, {side: [futures of _Block]}, the checked matrix or None)."""
    if sp.issparse(interactions) or isinstance(interactions, np.ndarray):
        matrix = check_interactions(interactions, "interactions",
                                    allow_negative=loss.allows_negative, loss_name=loss.name)
        data = prepare(matrix, get_backend("cpu"))
        parts = {side: [client.submit(_value, _Block(block))
                        for block in data.blocks(side, count)]
                 for side, count in (("user", user_blocks), ("item", item_blocks))}
        return matrix.shape, parts, matrix
    if not hasattr(interactions, "to_delayed"):
        raise TypeError(f"interactions must be a scipy.sparse matrix or a Dask DataFrame; "
                        f"got {type(interactions).__name__}")
    return _layout_frame(client, interactions, loss, user_blocks, item_blocks, user_col,
                         item_col, value_col)


def _layout_frame(client, frame, loss, user_blocks, item_blocks, user_col, item_col,
                  value_col):
    missing = [name for name in (user_col, item_col) if name not in frame.columns]
    if missing:
        raise ValueError(f"the DataFrame has no column {missing[0]!r} (it has "
                         f"{', '.join(map(str, frame.columns))}): pass user_col= and "
                         "item_col= naming the id columns")
    for name in (user_col, item_col):
        if frame[name].dtype.kind not in "iu":
            raise ValueError(f"column {name!r} holds {frame[name].dtype}, not integer ids: "
                             "map the ids to integers 0..n-1 first (e.g. "
                             "dask.dataframe's categorize, or rgals.data.read for files)")
    if value_col not in frame.columns:
        value_col = None
    elif frame[value_col].dtype.kind not in "iuf":
        raise ValueError(f"column {value_col!r} holds {frame[value_col].dtype}, not numbers")
    partitions = client.compute(frame.to_delayed())
    summaries = _gather(client, [client.submit(_partition_summary, partition, user_col,
                                               item_col, value_col, retries=RETRIES)
                                 for partition in partitions])
    pairs = sum(summary["pairs"] for summary in summaries)
    if pairs == 0:
        raise ValueError("the DataFrame has no rows: nothing to fit")
    shape = []
    for name in (user_col, item_col):
        nulls = sum(summary[f"{name} nulls"] for summary in summaries)
        if nulls:
            raise ValueError(f"column {name!r} has {nulls} missing ids; drop those rows")
        low = min(summary[name][0] for summary in summaries if summary[name])
        high = max(summary[name][1] for summary in summaries if summary[name])
        if low < 0:
            raise ValueError(f"column {name!r} has negative ids (smallest {low}); ids are "
                             "rows of the matrix, 0 and up")
        shape.append(high + 1)
    if value_col is not None:
        nonfinite = sum(summary["nonfinite"] for summary in summaries)
        if nonfinite:
            raise ValueError(f"column {value_col!r} has {nonfinite} missing or infinite "
                             "values; drop or fill them")
        negative = sum(summary["negative"] for summary in summaries)
        if negative and not loss.allows_negative:
            raise ValueError(f"column {value_col!r} has {negative} negative values, which "
                             f"loss {loss.name!r} does not take (negative feedback needs "
                             "loss='ials')")
    edges = {side: np.array([rows.start for rows in row_ranges(shape[index], count)]
                            + [shape[index]])
             for index, (side, count) in enumerate((("user", user_blocks),
                                                    ("item", item_blocks)))}
    splits = [client.submit(_split, partition, user_col, item_col, value_col,
                            edges["user"], edges["item"], retries=RETRIES)
              for partition in partitions]
    parts = {}
    for index, side in enumerate(SIDES):
        n_columns = shape[1 - index]
        built = []
        for k, rows in enumerate(row_ranges(shape[index], len(edges[side]) - 1)):
            pieces = [client.submit(_piece, split, (side, k)) for split in splits]
            built.append(client.submit(_build, side, rows, n_columns, *pieces,
                                       retries=RETRIES))
        # each block's pairs sit after the previous blocks' in that side's order
        counts = _gather(client, [client.submit(_nnz, part) for part in built])
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        parts[side] = [client.submit(_with_offset, part, int(offset), retries=RETRIES)
                       for part, offset in zip(built, offsets)]
    return tuple(shape), parts, None


def _totals(client, parts, shape):
    """InteractionTotals from the blocks (counts and sums per row of each side)."""
    by_side = {side: _gather(client, [client.submit(_block_totals, part)
                                      for part in parts[side]]) for side in SIDES}
    ranges = [part for side in SIDES for part in by_side[side] if part[2] is not None]
    value_range = ((min(part[2][0] for part in ranges), max(part[2][1] for part in ranges))
                   if ranges else None)
    return InteractionTotals(
        shape=tuple(shape),
        user_counts=np.concatenate([part[0] for part in by_side["user"]]),
        user_sums=np.concatenate([part[1] for part in by_side["user"]]),
        item_counts=np.concatenate([part[0] for part in by_side["item"]]),
        item_sums=np.concatenate([part[1] for part in by_side["item"]]),
        value_range=value_range)


def _gather_matrix(client, parts, totals):
    """The users x items CSR from the user blocks (their columns renumbered back)."""
    return sp.vstack([_global_matrix(part, totals.shape[1]) for part in _gather(client, parts)],
                     format="csr")


def _write_blocks(client, directory, files, blocks):
    writes = [client.submit(_write_block, block, str(directory / name), retries=RETRIES)
              for side in files for block, name in zip(blocks[side], files[side])]
    _gather(client, writes)


def _manifest(model, files):
    return {"format": "rgals-dask", "format_version": 1,
            "shape": list(model.interaction_totals_.shape),
            "factors": int(model.user_factors_.shape[1]),
            "dtype": np.dtype(model.user_factors_.dtype).name,
            "loss": model.loss_.to_dict(),
            "blocks": _block_ranges(model._ranges), "files": files}


def _block_ranges(ranges):
    """[start, stop] of each block of the three factor sides, for a manifest (the item
    factors of the sweep before are blocked as the items)."""
    return {side: [[rows.start, rows.stop] for rows in ranges["item" if side == "previous"
                                                             else side]]
            for side in ("user", "item", "previous")}


def _write_checkpoint(client, directory, sweep, state, ranges, shape, d, dtype, loss,
                      top_k=None):
    """The factors after `sweep` (and `top_k`, _Fit.top_k_state) into
    directory/sweep-NNNNNN/, then checkpoint.json (atomic) names it; the previous
    checkpoint's folder goes once the new one is named. Returns (the state, the top-K
    state) read back from the files."""
    directory = Path(directory)
    folder = f"sweep-{sweep:06d}"
    (directory / folder).mkdir(parents=True, exist_ok=True)
    files = {side: [f"{folder}/{side}-{k:05d}.npy" for k in range(len(state[side]))]
             for side in ("user", "item", "previous")}
    _write_blocks(client, directory, files, state)
    previous = _checkpoint_manifest(directory)
    manifest = {"format": "rgals-dask-checkpoint", "sweep": sweep, "shape": list(shape),
                "factors": d, "dtype": np.dtype(dtype).name, "loss": loss.to_dict(),
                "blocks": _block_ranges(ranges), "files": files}
    if top_k is not None:
        meta, arrays, lengths, user_sums = top_k
        extra = {name: [f"{folder}/{name}-{k:05d}.npy" for k in range(len(blocks))]
                 for name, blocks in arrays.items()}
        _write_blocks(client, directory, extra, arrays)
        sums = None
        if user_sums is not None:
            sums = f"{folder}/user_sums.npy"
            write_atomic(directory / sums,
                         lambda file: np.save(file, user_sums, allow_pickle=False))
        manifest["top_k"] = {**meta, "files": extra, "lengths": lengths, "user_sums": sums}
    write_atomic(directory / CHECKPOINT,
                 lambda file: file.write(json.dumps(manifest, indent=2).encode() + b"\n"))
    if previous is not None and previous["sweep"] != sweep:
        old = directory / f"sweep-{previous['sweep']:06d}"
        for path in sorted(old.glob("*.npy")):
            path.unlink()
        if old.is_dir() and not any(old.iterdir()):
            old.rmdir()
    return _read_checkpoint(client, directory, shape, ranges, d, dtype, loss)[1:]


def _checkpoint_manifest(directory):
    path = Path(directory) / CHECKPOINT
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _read_checkpoint(client, directory, shape, ranges, d, dtype, loss):
    """(its sweep, {side: futures of the blocks}, the top-K state for
    _Fit.restore_top_k or None) of the checkpoint in `directory`."""
    manifest = _checkpoint_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"{directory} holds no checkpoint ({CHECKPOINT}); "
                                "checkpoint_every and checkpoint_dir write one")
    expected = {"shape": list(shape), "factors": d, "dtype": np.dtype(dtype).name,
                "loss": json.loads(json.dumps(loss.to_dict())),
                "blocks": _block_ranges(ranges)}
    for name, value in expected.items():
        if manifest.get(name) != value:
            raise ValueError(f"the checkpoint in {directory} was written by another fit: "
                             f"its {name} is {manifest.get(name)!r}, this fit's "
                             f"{value!r}; resume with the same data, parameters and blocks")
    state = {side: [client.submit(_read_block, str(Path(directory) / name),
                                  (rows[1] - rows[0], d), dtype, retries=RETRIES)
                    for name, rows in zip(manifest["files"][side], manifest["blocks"][side])]
             for side in ("user", "item", "previous")}
    saved = manifest.get("top_k")  # there exactly when the loss (checked) has top_k
    top_k = None
    if saved is not None:
        arrays = {name: [client.submit(_read_block, str(Path(directory) / path), (length,),
                                       np.float64, retries=RETRIES)
                         for path, length in zip(paths, saved["lengths"][name])]
                  for name, paths in saved["files"].items()}
        sums = (None if saved["user_sums"] is None else
                _read_block(Path(directory) / saved["user_sums"], (shape[0],), np.float64))
        top_k = ({"sweeps": saved["sweeps"], "refreshed": saved["refreshed"]}, arrays, sums)
    return manifest["sweep"], state, top_k
