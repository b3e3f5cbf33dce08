"""The functional core: `run`, the training loop of every fit, over an executor.

An executor owns where the row blocks live and offers what a sweep needs (design.md 6.1):
`begin_sweep` (a reweighting's refresh), `half_step`, the exact `objective`,
`softmax_loss` and `validation_metrics`, `snapshot` / `restore`. `LocalExecutor` holds
every block in this process; rgals.dask's DaskExecutor holds them on workers. The loop on
top (the monitor, tol, early stopping, callbacks, the regularization path of rgals.path)
is the same for both. A half step is

    side statistics of the fixed side, per block of its rows (loss.side_statistics)
    -> their sum (solve.add_statistics; a tree-sum on Dask)
    -> the row systems of each block of the solved side (loss.row_systems)
    -> the solves and their decrease (solve.solve_blocks)

`ALSSolver.fit` is a facade over it (validate, prepare, initialise, run, store); `train`
runs the loop on prepared data without the estimator. Stopping policies and reporting
are callbacks (as in XGBoost's `training.train`): `Tolerance`, `EarlyStopping`,
`ProgressBar`, `UserCallback`, or any `Callback`.
"""

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from .backend import to_host
from .metrics import ranking_metrics
from .monitor import ConvergenceMonitor, softmax_loss
from .prepared import InteractionTotals, prepare, row_ranges
from .solve import add_statistics, solve_blocks
from .topk import report

log = logging.getLogger("rgals")

MONITOR_LEVELS = ("sweep", "full")


@dataclass
class TrainState:
    """What callbacks see: the executor (its bound `loss` and its factors), the monitor,
    the sweep just finished and the perf_counter time the fit began."""

    executor: object
    monitor: ConvergenceMonitor
    sweep: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def loss(self):
        return self.executor.loss

    def snapshot(self):
        """The factors now, for `restore`."""
        return self.executor.snapshot()

    def restore(self, snapshot):
        self.executor.restore(snapshot)


class LocalExecutor:
    """The operations of a sweep on one process, every row block in memory (design.md 6.1;
    rgals.dask.executor.DaskExecutor holds the blocks on workers instead).

    `data` is PreparedData; `factors` a dict of the "user", "item" and (optional)
    "previous" factor arrays on the data's backend, updated in place and shared with the
    executors of other data (the regularization path's fit part). `start(loss)` begins a
    training with a bound loss; then per sweep `begin_sweep`, `keep_previous`, and
    `half_step` for each side, with `objective`, `softmax_loss` and `validation_metrics`
    on evaluation sweeps, `snapshot` / `restore` for early stopping and `finish` at the
    end.

    During training both sides are stored in a shared rotated basis (the solvers save a
    product a half step that way): the factors are user_factors @ basis.T and
    item_factors @ basis.T (previous @ previous_basis.T). Scores, and so every metric,
    are the same either way; `finish` undoes the rotation.
    """

    def __init__(self, data, factors, *, solver="auto", cg_steps=3, cg_tolerance=None,
                 n_blocks=1, totals=None):
        """totals: the data's InteractionTotals when known already (else computed once,
        when first asked for)."""
        self.data, self.backend, self.factors = data, data.backend, factors
        self.solver, self.cg_steps, self.cg_tolerance = solver, cg_steps, cg_tolerance
        self.n_blocks = n_blocks
        self.loss = None
        self.basis = self.previous_basis = None
        self._totals = totals

    # -- data ------------------------------------------------------------------------------

    @property
    def shape(self):
        return self.data.shape

    @property
    def totals(self):
        """InteractionTotals of the training data (on the host)."""
        if self._totals is None:
            self._totals = InteractionTotals.of(self.data.host_user_items)
        return self._totals

    @property
    def operator(self):
        """The users x items matrix, for what a loss resolves from the data."""
        return self.data.host_user_items

    def rows(self, users):
        """The training rows of `users` (a host CSR)."""
        return self.data.host_user_items[users]

    def without(self, held):
        """An executor of the data less the pairs of `held` (a users x items CSR of
        stored pairs), sharing this one's factors."""
        fit_part = (self.data.host_user_items - held).tocsr()
        fit_part.eliminate_zeros()  # the held pairs cancel exactly
        return LocalExecutor(prepare(fit_part, self.backend), self.factors,
                             solver=self.solver, cg_steps=self.cg_steps,
                             cg_tolerance=self.cg_tolerance, n_blocks=self.n_blocks)

    def place(self, user_factors, item_factors):
        """The initial factors (host arrays) put on the backend, with an array for the
        item factors the last user step solves against."""
        self.factors.update(user=self.backend.put(user_factors),
                            item=self.backend.put(item_factors))
        self.factors["previous"] = self.backend.xp.empty_like(self.factors["item"])

    def bind(self, spec):
        """`spec` (its data-decided hyperparameters resolved) bound to this data; a
        device fit binds to device arrays, the host's totals serve the CPU."""
        return spec.bind(self.data.user_items if self.backend.on_device else self.totals)

    # -- a training ------------------------------------------------------------------------

    def start(self, loss):
        """Begin training the bound `loss` (a fresh reweighting, if it has one)."""
        self.loss = loss
        self.reweighting = loss.reweighting()
        self.weights = None  # the reweighting's last weights, user-major
        self.pair_terms = None  # {side: (confidences, linear terms)} in the side's order

    def begin_sweep(self):
        """Refresh what the loss freezes for a sweep, when due: False when nothing
        changed, else a dict of what moved (the objective changed)."""
        if self.reweighting is None or not self.reweighting.begin_sweep():
            return False
        data = self.data
        refreshed = self.reweighting.refresh_block(
            self.factors["user"], self.factors["item"], data.user_items, self.weights,
            self.backend)
        self.weights = refreshed.weights
        self.pair_terms = {side: (data.in_order(side, refreshed.confidence),
                                  None if refreshed.linear is None
                                  else data.in_order(side, refreshed.linear))
                           for side in ("user", "item")}
        self.loss = self.loss.with_user_sums(refreshed.user_sums)
        return report(refreshed.totals)

    def keep_previous(self):
        """The item factors the coming user step solves against become the previous."""
        previous = self.factors.get("previous")
        if previous is not None:
            previous[...] = self.factors["item"]
            self.previous_basis = self.basis

    def half_step(self, side, sweep):
        """Solve `side` (in place); returns (its decrease, its Hessian's bounds)."""
        other = "item" if side == "user" else "user"
        solution, systems = half_step(self.loss, self.data, side, self.factors[side],
                                      self.factors[other], self.solver, self.cg_steps,
                                      self.n_blocks, share_basis=True,
                                      cg_tolerance=self.cg_tolerance,
                                      pair_terms=self.pair_terms)
        if solution.rotation is not None:
            self.basis = (solution.rotation if self.basis is None
                          else self.basis @ solution.rotation)
        check_finite(self.factors[side], side, sweep, self.loss, self.backend.xp)
        return solution.decrease, self.loss.hessian_bounds(side, systems, self.backend,
                                                           solution)

    def objective(self, magnitude=False):
        return self.loss.objective(self.factors["user"], self.factors["item"], self.data,
                                   magnitude=magnitude,
                                   pair_terms=self.pair_terms and self.pair_terms["user"])

    def softmax_loss(self, users):
        return softmax_loss(to_host(self.factors["user"]), to_host(self.factors["item"]),
                            self.data.host_user_items, users)

    def validation_metrics(self, validation, K, metrics, users=None):
        """Ranking metrics of `validation`, the training items masked."""
        return ranking_metrics(self.factors["user"], self.factors["item"], validation,
                               self.data.host_user_items, K=K, metrics=metrics, users=users)

    def snapshot(self):
        """Copies of the factors and their bases, for `restore`."""
        return ({name: array.copy() for name, array in self.factors.items()},
                self.basis, self.previous_basis)

    def restore(self, snapshot):
        arrays, self.basis, self.previous_basis = snapshot
        for name, saved in arrays.items():
            self.factors[name][...] = saved

    def finish(self):
        """Put the factors back in the original basis (in place)."""
        for name, basis in (("user", self.basis), ("item", self.basis),
                            ("previous", self.previous_basis)):
            array = self.factors.get(name)
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
    the bar is off. One bar for the whole fit: the regularization path's sweeps (they
    count toward `iterations`) move it too, under their own stage name (`open`)."""

    def __init__(self, total, show=True, description="rgals"):
        self.total, self.show, self.description = total, show, description
        self.bar = None

    def open(self, stage=None):
        """The bar, opened on the first call; `stage` names what its sweeps do for now."""
        if self.bar is None:
            self.bar = tqdm(total=self.total, disable=not self.show, unit="sweep",
                            desc=self.description)
            # the first sweep of a new install waits for Numba to compile the kernels
            self.bar.set_postfix_str("first sweep (after an install it compiles the "
                                     "kernels, about 10 s; later runs load them)")
        self.bar.set_description(self.description if stage is None
                                 else f"{self.description}: {stage}")
        return self.bar

    def before_training(self, state):
        bar = self.open()
        bar.n = state.sweep  # the path's sweeps, or a resumed fit's
        bar.refresh()

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
              share_basis=False, cg_tolerance=None, pair_terms=None):
    """Solve `side`'s factors (in place) given the other side's; returns
    (rgals.solve.Solution, the RowSystems of each block). share_basis: see
    rgals.solve.solve_blocks (both sides may come back rotated). pair_terms: a
    reweighted sweep's {side: (confidences, linear terms)} in each side's pair order."""
    fixed = "item" if side == "user" else "user"
    statistics = add_statistics(
        loss.side_statistics(side, others[rows], rows)
        for rows in row_ranges(data.matrix(fixed).shape[0], n_blocks))
    blocks = data.blocks(side, n_blocks)
    terms = None if pair_terms is None else pair_terms[side]
    systems = [loss.row_systems(side, statistics, block, others,
                                None if terms is None else _block_terms(terms, block))
               for block in blocks]
    solution = solve_blocks(systems, [factors[block.rows] for block in blocks], solver,
                            cg_steps, data.backend, share_basis=share_basis,
                            cg_tolerance=cg_tolerance)
    return solution, systems


def _block_terms(terms, block):
    confidence, linear = terms
    return confidence[block.pairs], None if linear is None else linear[block.pairs]


def train(loss, data, user_factors, item_factors, iterations, *, solver="auto",
          cg_steps=3, cg_tolerance=None, n_blocks=1, previous_item_factors=None, **options):
    """Run up to `iterations` sweeps (user half step, then item half step) of `loss`
    (bound to the data) on PreparedData `data`, updating the factors in place; returns
    the ConvergenceMonitor. The loop is `run`'s, on a LocalExecutor (see both).

    n_blocks: row blocks per side (the same factors up to summation order).
    cg_tolerance: see rgals.solve.solve_blocks (None: to the factors' rounding).
    previous_item_factors: an array shaped as item_factors that receives the item factors
    the final user factors were solved against (those of the sweep before), so that
    fold-in can solve a user exactly as the fit did. `options`: those of `run`.
    """
    factors = {"user": user_factors, "item": item_factors}
    if previous_item_factors is not None:
        factors["previous"] = previous_item_factors
    executor = LocalExecutor(data, factors, solver=solver, cg_steps=cg_steps,
                             cg_tolerance=cg_tolerance, n_blocks=n_blocks)
    executor.start(loss)
    return run(executor, iterations, **options)


def run(executor, iterations, *, monitor="sweep", tol=1e-4, identity_tolerance=1e-6,
        eval_every=1, validation=None, metric=("ndcg", 20), softmax_users=None,
        callbacks=(), first_sweep=1, started=None, history=None):
    """The training loop of every fit: up to `iterations` sweeps on an executor started
    with its bound loss (LocalExecutor, or rgals.dask's DaskExecutor: the same loop on
    row blocks held by workers).

    monitor: "sweep" (exact F on evaluation sweeps and at the end; the default) or
    "full" (exact F and the identity check after every half step). An evaluation
    sweep is one that scores `validation` or the softmax loss. tol: the target of
    the monitor's predictions (stopping on it is the `Tolerance` callback's). Every
    `eval_every` sweeps, and at the last, the validation metric (`metric` = (name, K),
    training items masked) and the softmax loss on `softmax_users` are recorded.
    first_sweep, started: the number of the first sweep and the perf_counter time the
    fit began, for a fit that ran sweeps before this training (rgals.path): the monitor,
    the callbacks and `eval_every` count from the fit's first sweep. history: the
    ConvergenceMonitor of the fit this one goes on from (a warm start), continued with a
    new segment. Returns the ConvergenceMonitor.
    """
    if monitor not in MONITOR_LEVELS:
        raise ValueError(f"unknown monitor {monitor!r}; use one of "
                         f"{', '.join(map(repr, MONITOR_LEVELS))}")
    name, k = metric
    recorder = history or ConvergenceMonitor(tol=tol, identity_tolerance=identity_tolerance,
                                             metric=f"{name}@{k}")
    state = TrainState(executor, recorder, sweep=first_sweep - 1)
    if started is not None:
        state.started = started
    last = first_sweep + iterations - 1
    full = monitor == "full"
    sample = softmax_users is not None and len(softmax_users) > 0

    for callback in callbacks:
        callback.before_training(state)
    try:
        for sweep in range(first_sweep, last + 1):
            changed = executor.begin_sweep()
            if sweep == first_sweep and history is not None:
                recorder.start_segment(executor.objective(), new_fit=True)
            elif sweep == first_sweep:
                recorder.start(executor.objective())
            elif changed:
                recorder.start_segment(executor.objective())
            if isinstance(changed, dict):
                recorder.note_refresh(changed)
            for side in ("user", "item"):
                if side == "item":
                    executor.keep_previous()
                start = time.perf_counter()
                decrease, bounds = executor.half_step(side, sweep)
                seconds = time.perf_counter() - start
                exact, size = executor.objective(magnitude=True) if full else (None, None)
                recorder.half_step(sweep, side, decrease, exact, seconds, bounds,
                                   magnitude=size)
            state.sweep = sweep
            # an evaluation sweep scores validation data or the softmax loss; "sweep"
            # then measures F exactly too (a fit with neither: at the end only)
            evaluate = (validation is not None or sample) and (
                sweep % eval_every == 0 or sweep == last)
            exact, size = (executor.objective(magnitude=True) if evaluate and not full
                           else (None, None))
            record = recorder.end_sweep(
                objective=exact, magnitude=size,
                softmax_loss=(executor.softmax_loss(softmax_users)
                              if evaluate and sample else None),
                validation=(executor.validation_metrics(validation, k, (name, "recall"))
                            if evaluate and validation is not None else None))
            stop = False
            for callback in callbacks:
                stop = callback.after_sweep(state, record) or stop
            if stop:
                log.info("%s", recorder.stop_reason)
                break
        else:  # numbered from the fit's first sweep (the path's included)
            recorder.stop_reason = f"ran every sweep ({last})"
        executor.finish()  # before the last measurement: F of the factors returned
        if recorder.rows and not recorder.rows[-1]["exact"]:
            # a fit stopped between evaluations
            recorder.record_exact(*executor.objective(magnitude=True))
    finally:
        for callback in callbacks:
            callback.after_training(state)
        executor.finish()  # a restored snapshot, or a fit stopped by an error
    return recorder


def check_finite(factors, side, sweep, loss, xp):
    # one float64 sum finds any NaN or infinity without a boolean array the size of factors
    if not bool(xp.isfinite(factors.sum(dtype=np.float64))):
        raise_diverged(side, sweep, loss, factors.dtype)


def raise_diverged(side, sweep, loss, dtype):
    """The error of a half step that left `side`'s factors non-finite."""
    raise FloatingPointError(
        f"the fit diverged: non-finite {side} factors in sweep {sweep}. Likely "
        f"causes: confidence values too large for this dtype ({np.dtype(dtype)}), or "
        f"regularization={loss.regularization} too small for this data. Scale the "
        "values down, raise `regularization`, or use dtype=np.float64")


def initial_factors(rng, rows, factors, dtype, scale=0.01):
    """A fit's starting factors: scale * N(0, 1) entries (drawn in float64, scaled in
    place, then cast)."""
    values = rng.standard_normal((rows, factors))
    values *= scale
    return values.astype(dtype)
