"""The functional core: `train` runs ALS sweeps on prepared data, with callbacks.

`ALSSolver.fit` is a facade over it (validate, prepare, initialise, train, store);
tuning and the distributed mode call it directly. A half step is

    side statistics of the fixed side, per block of its rows (loss.side_statistics)
    -> their sum (losses.add_statistics; a tree-sum on Dask)
    -> the row systems of each block of the solved side (loss.row_systems)
    -> the solves and their decrease (solve.solve_blocks)

Stopping policies and reporting are callbacks (as in XGBoost's `training.train`):
`Tolerance`, `EarlyStopping`, `ProgressBar`, `UserCallback`, or any `Callback`.
"""

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from .backend import to_host
from .losses import add_statistics
from .metrics import ranking_metrics
from .monitor import ConvergenceMonitor, softmax_loss
from .prepared import row_ranges
from .solve import solve_blocks

log = logging.getLogger("rgals")

MONITOR_LEVELS = ("sweep", "full")


@dataclass
class TrainState:
    """What callbacks see: the bound loss, the data, the factors (updated in place),
    the monitor, the item factors the user factors were solved against (or None), and
    the sweep just finished.

    During training both sides are stored in a shared rotated basis (the solvers save a
    product a half step that way): the factors are user_factors @ basis.T and
    item_factors @ basis.T (previous_item_factors @ previous_basis.T). Scores, and so
    every metric, are the same either way; `train` undoes the rotation at the end. A
    basis of None is the original one.
    """

    loss: object
    data: object
    user_factors: object
    item_factors: object
    monitor: ConvergenceMonitor
    previous_item_factors: object = None
    sweep: int = 0
    started: float = field(default_factory=time.perf_counter)
    basis: object = None
    previous_basis: object = None

    def snapshot(self):
        """Copies of the factors and their bases, for `restore`."""
        arrays = (self.user_factors, self.item_factors, self.previous_item_factors)
        return ([None if array is None else array.copy() for array in arrays],
                self.basis, self.previous_basis)

    def restore(self, snapshot):
        arrays, self.basis, self.previous_basis = snapshot
        for target, saved in zip((self.user_factors, self.item_factors,
                                  self.previous_item_factors), arrays):
            if target is not None:
                target[...] = saved

    def rotate(self, rotation):
        """Both sides were rotated by `rotation` (a solve with share_basis)."""
        self.basis = rotation if self.basis is None else self.basis @ rotation

    def unrotate(self):
        """Put the factors back in the original basis (in place)."""
        for array, basis in ((self.user_factors, self.basis),
                             (self.item_factors, self.basis),
                             (self.previous_item_factors, self.previous_basis)):
            if array is not None and basis is not None:
                array[...] = array @ basis.T.astype(array.dtype)
        self.basis = self.previous_basis = None


class Callback:
    """Hooks into `train`; `after_sweep` returning True stops the fit (after the sweep)."""

    def before_training(self, state):
        pass

    def after_sweep(self, state, record):
        return False

    def after_training(self, state):
        pass


class Tolerance(Callback):
    """Stop once a sweep decreases F by at most tol * |F| (within one segment)."""

    def __init__(self, tol):
        self.tol = tol

    def after_sweep(self, state, record):
        threshold = self.tol * abs(record["objective"])
        if self.tol > 0 and record["decrease"] <= threshold:
            state.monitor.stop_reason = (f"converged: sweep {record['sweep']} decreased F by "
                                         f"{record['decrease']:.3g} <= tol * |F| = "
                                         f"{threshold:.3g}")
            return True
        return False


class EarlyStopping(Callback):
    """Stop after `patience` evaluations without a better validation metric, and put
    back the factors of the best evaluation."""

    def __init__(self, patience):
        self.patience = patience
        self.best = None

    def after_sweep(self, state, record):
        monitor = state.monitor
        if record.get("improved"):
            self.best = state.snapshot()
        elif "improved" in record and monitor.evaluations_since_best >= self.patience:
            monitor.stop_reason = (f"early stopping: validation {monitor.metric} did not "
                                   f"improve for {self.patience} evaluations (best "
                                   f"{monitor.best_score:.4f} after sweep "
                                   f"{monitor.best_sweep})")
            return True
        return False

    def after_training(self, state):
        monitor = state.monitor
        if self.best is not None and monitor.best_sweep != state.sweep:
            state.restore(self.best)
            log.info("restored the factors of sweep %d (best validation %s %.4f)",
                     monitor.best_sweep, monitor.metric, monitor.best_score)


class UserCallback(Callback):
    """`function(iteration, elapsed, record)` after each sweep (iteration from 0);
    returning False stops the fit."""

    def __init__(self, function):
        self.function = function

    def after_sweep(self, state, record):
        if self.function(state.sweep - 1, time.perf_counter() - state.started,
                         record) is False:
            state.monitor.stop_reason = f"stopped by the callback after sweep {state.sweep}"
            return True
        return False


class ProgressBar(Callback):
    """F, the rate and the validation metric per sweep on a tqdm bar, or in the log when
    the bar is off."""

    def __init__(self, total, show=True, description="rgals"):
        self.total, self.show, self.description = total, show, description
        self.bar = None

    def before_training(self, state):
        self.bar = tqdm(total=self.total, initial=state.sweep, disable=not self.show,
                        unit="sweep", desc=self.description)

    def after_sweep(self, state, record):
        metric = state.monitor.metric
        shown = {"F": f"{record['objective']:.6g}", "rho": f"{record['rate']:.3g}"}
        if f"validation_{metric}" in record:
            shown[metric] = f"{record[f'validation_{metric}']:.4f}"
        self.bar.update(1)
        self.bar.set_postfix(shown)
        if self.bar.disable:
            log.info("sweep %d: %s", record["sweep"],
                     ", ".join(f"{name} {value}" for name, value in shown.items()))
        return False

    def after_training(self, state):
        self.bar.close()


def half_step(loss, data, side, factors, others, solver="auto", cg_steps=3, n_blocks=1,
              share_basis=False, cg_tolerance=None):
    """Solve `side`'s factors (in place) given the other side's; returns
    (rgals.solve.Solution, the RowSystems of each block). share_basis: see
    rgals.solve.solve_blocks (both sides may come back rotated)."""
    fixed = "item" if side == "user" else "user"
    statistics = add_statistics(
        loss.side_statistics(side, others[rows], rows)
        for rows in row_ranges(data.matrix(fixed).shape[0], n_blocks))
    blocks = data.blocks(side, n_blocks)
    systems = [loss.row_systems(side, statistics, block, others) for block in blocks]
    solution = solve_blocks(systems, [factors[block.rows] for block in blocks], solver,
                            cg_steps, data.backend, share_basis=share_basis,
                            cg_tolerance=cg_tolerance)
    return solution, systems


def train(loss, data, user_factors, item_factors, iterations, *, solver="auto",
          cg_steps=3, cg_tolerance=None, monitor="sweep", tol=1e-4, identity_tolerance=1e-6,
          eval_every=1, validation=None, metric=("ndcg", 20), softmax_users=None,
          callbacks=(), n_blocks=1, previous_item_factors=None, first_sweep=1, started=None):
    """Run up to `iterations` sweeps (user half step, then item half step) of `loss`
    (bound to the data) on PreparedData `data`, updating the factors in place.

    monitor: "sweep" (exact F on evaluation sweeps and at the end; the default) or
    "full" (exact F and the identity check after every half step). An evaluation
    sweep is one that scores `validation` or the softmax loss. tol: the target of
    the monitor's predictions (stopping on it is the `Tolerance` callback's). Every
    `eval_every` sweeps, and at the last, the validation metric (`metric` = (name, K),
    training items masked) and the softmax loss on `softmax_users` are recorded.
    n_blocks: row blocks per side (the same factors up to summation order).
    cg_tolerance: see rgals.solve.solve_blocks (None: to the factors' rounding).
    previous_item_factors: an array shaped as item_factors that receives the item factors
    the final user factors were solved against (those of the sweep before), so that
    fold-in can solve a user exactly as the fit did. first_sweep, started: the number of
    the first sweep and the perf_counter time the fit began, for a fit that ran sweeps
    before this training (rgals.path): the monitor, the callbacks and `eval_every` count
    from the fit's first sweep. Returns the ConvergenceMonitor.
    """
    if monitor not in MONITOR_LEVELS:
        raise ValueError(f"unknown monitor {monitor!r}; use one of "
                         f"{', '.join(map(repr, MONITOR_LEVELS))}")
    name, k = metric
    recorder = ConvergenceMonitor(tol=tol, identity_tolerance=identity_tolerance,
                                  metric=f"{name}@{k}")
    state = TrainState(loss, data, user_factors, item_factors, recorder,
                       previous_item_factors, sweep=first_sweep - 1)
    if started is not None:
        state.started = started
    last = first_sweep + iterations - 1
    full = monitor == "full"
    sample = softmax_users is not None and len(softmax_users) > 0
    factors = {"user": user_factors, "item": item_factors}

    def objective():
        return loss.objective(user_factors, item_factors, data)

    def measured():
        """(F, the size of its terms): what an identity check needs."""
        return loss.objective(user_factors, item_factors, data, magnitude=True)

    for callback in callbacks:
        callback.before_training(state)
    try:
        for sweep in range(first_sweep, last + 1):
            changed = loss.begin_sweep(user_factors, item_factors, data)
            if sweep == first_sweep:
                recorder.start(objective())
            elif changed:
                recorder.start_segment(objective())
            if isinstance(changed, dict):
                recorder.note_refresh(changed)
            for side, other in (("user", "item"), ("item", "user")):
                if side == "item" and previous_item_factors is not None:
                    previous_item_factors[...] = item_factors
                    state.previous_basis = state.basis
                start = time.perf_counter()
                solution, systems = half_step(loss, data, side, factors[side], factors[other],
                                              solver, cg_steps, n_blocks, share_basis=True,
                                              cg_tolerance=cg_tolerance)
                seconds = time.perf_counter() - start
                if solution.rotation is not None:
                    state.rotate(solution.rotation)
                _check_finite(factors[side], side, sweep, loss, data.backend.xp)
                exact, size = measured() if full else (None, None)
                recorder.half_step(sweep, side, solution.decrease, exact, seconds,
                                   loss.hessian_bounds(side, systems, data.backend, solution),
                                   magnitude=size)
            state.sweep = sweep
            # an evaluation sweep scores validation data or the softmax loss; "sweep"
            # then measures F exactly too (a fit with neither: at the end only)
            evaluate = (validation is not None or sample) and (
                sweep % eval_every == 0 or sweep == last)
            exact, size = measured() if evaluate and not full else (None, None)
            record = recorder.end_sweep(
                objective=exact, magnitude=size,
                softmax_loss=(softmax_loss(to_host(user_factors), to_host(item_factors),
                                           data.host_user_items, softmax_users)
                              if evaluate and sample else None),
                validation=(ranking_metrics(user_factors, item_factors, validation,
                                            data.host_user_items, K=k,
                                            metrics=(name, "recall"))
                            if evaluate and validation is not None else None))
            stop = False
            for callback in callbacks:
                stop = callback.after_sweep(state, record) or stop
            if stop:
                log.info("%s", recorder.stop_reason)
                break
        state.unrotate()  # before the last measurement: F of the factors returned
        if recorder.rows and not recorder.rows[-1]["exact"]:
            recorder.record_exact(*measured())  # a fit stopped between evaluations
    finally:
        for callback in callbacks:
            callback.after_training(state)
        state.unrotate()  # a restored snapshot, or a fit stopped by an error
    return recorder


def _check_finite(factors, side, sweep, loss, xp):
    # one float64 sum finds any NaN or infinity without a boolean array the size of factors
    if not bool(xp.isfinite(factors.sum(dtype=np.float64))):
        raise FloatingPointError(
            f"the fit diverged: non-finite {side} factors in sweep {sweep}. Likely "
            f"causes: confidence values too large for this dtype ({factors.dtype}), or "
            f"regularization={loss.regularization} too small for this data. Scale the "
            "values down, raise `regularization`, or use dtype=np.float64")
