"""The convergence monitor attached to every fit (DESIGN 1.5).

Per half step it records the objective F, the decrease the solver reports and how far
that is from F_before - F_after (the descent identity: an error beyond rounding means the
systems do not match the loss), and bounds on the block Hessian's extreme eigenvalues.
Per sweep it adds the observed contraction rho_t = dF_t / dF_(t-1), the bound
rho_bound = 1 - mu / min(L_P, L_Q) (mu the smaller of the two blocks' lowest Hessian
eigenvalues, L_P and L_Q their highest), the sweeps predicted to reach `tol`, and whether
the observed rate respects the bound.

Where the bound holds: for two-block exact alternating minimisation of a function that
is convex with these block constants (Beck and Tetruashvili, SIAM J. Optim. 2013). Each
half step here is convex in its block, but the factorised objective is not jointly
convex in (P, Q), so the bound is a guarantee only in a convex neighbourhood of a
minimum, and then only for exact solves (CG stops early). Early sweeps, far from a
minimum, can contract more slowly than the bound; the monitor reports that as
`within_bound = 0` rather than hiding it. The Hessian bounds are exact when no pair
carries a Gram weight (alpha = 0) and conservative otherwise (see
`rgals.solve.hessian_bounds`).
"""

import csv
import io
import math
import warnings
from pathlib import Path

import numpy as np

from .files import check_directory, write_atomic
from .solve import hessian_bounds

HALF_STEP_COLUMNS = ("sweep", "side", "objective", "decrease", "identity_error", "seconds",
                     "hessian_min", "hessian_max")
SWEEP_COLUMNS = ("rate", "rate_bound", "predicted_sweeps", "within_bound", "softmax_loss")
# rates may exceed the bound by rounding when the decreases are tiny
_RATE_SLACK = 1e-6


class ConvergenceMonitor:
    """Records a fit half step by half step; `solver.monitor_` after `fit`.

    tol: the fit stops once a sweep decreases F by less than tol * |F| (0: never).
    identity_tolerance: largest accepted |(F_before - F_after) - decrease| / |F|; beyond
    it the monitor warns once (RuntimeWarning) that a half step does not match the loss.
    metric, patience: early stopping on the validation metric (e.g. "ndcg@20") after
    `patience` evaluations without improvement (None: no early stopping).

    `history` is a dict of plain columns, one entry per half step. Sweep-level columns
    (rate, rate_bound, predicted_sweeps, within_bound, softmax_loss and the validation
    metrics) are filled on the row that ends each sweep (the item half step in a fit)
    and NaN on the others.
    """

    def __init__(self, tol=1e-4, identity_tolerance=1e-6, metric=None, patience=None):
        self.tol = tol
        self.identity_tolerance = identity_tolerance
        self.metric = metric
        self.patience = patience
        self.rows = []
        self.initial_objective = None
        self.stop_reason = None
        self.best_sweep = None
        self.best_score = None
        self._objective = None
        self._sweep_start = None
        self._sweep_first_row = 0
        self._previous_decrease = None
        self._evaluations_since_best = 0
        self._warned = False

    def start(self, objective):
        """F at the initial factors."""
        self.initial_objective = self._objective = self._sweep_start = float(objective)

    def half_step(self, sweep, side, systems, decrease, objective, seconds):
        """Record one half step; `systems` are the RowSystems it solved."""
        objective = float(objective)
        change = self._objective - objective
        scale = max(abs(self._objective), abs(objective), np.finfo(float).tiny)
        identity_error = abs(change - decrease) / scale
        lowest, highest = hessian_bounds(systems)
        self.rows.append(dict(
            sweep=sweep, side=side, objective=objective, decrease=float(decrease),
            identity_error=identity_error, seconds=float(seconds), hessian_min=lowest,
            hessian_max=highest, **{name: math.nan for name in SWEEP_COLUMNS}))
        self._objective = objective
        if identity_error > self.identity_tolerance and not self._warned:
            self._warned = True
            warnings.warn(
                f"the {side} half step of sweep {sweep} reported a decrease of {decrease:.6g} "
                f"but F fell by {change:.6g} (relative error {identity_error:.2g}): the solved "
                "systems do not match the loss, or rounding is large for this dtype "
                "(try dtype=np.float64)", RuntimeWarning, stacklevel=3)

    def end_sweep(self, softmax_loss=None, validation=None):
        """Close the sweep whose half steps were just recorded; returns its record.

        validation: a dict of metrics (rgals.metrics.ranking_metrics) when the fit
        evaluated this sweep. Sets `stop_reason` when the fit should stop.
        """
        rows = self.rows[self._sweep_first_row:]
        if not rows:
            raise RuntimeError("end_sweep() needs at least one half_step() since the last one")
        last = rows[-1]
        objective = last["objective"]
        decrease = self._sweep_start - objective
        previous = self._previous_decrease
        rate = decrease / previous if previous is not None and previous > 0 else math.nan
        mu = min(row["hessian_min"] for row in rows)
        smoothness = min(row["hessian_max"] for row in rows)
        rate_bound = 1.0 - mu / smoothness if mu > 0 and smoothness > 0 else 1.0
        last.update(
            rate=rate, rate_bound=rate_bound,
            within_bound=(math.nan if math.isnan(rate)
                          else float(rate <= rate_bound + _RATE_SLACK)),
            predicted_sweeps=self._predicted_sweeps(decrease, objective, rate, rate_bound),
            softmax_loss=math.nan if softmax_loss is None else float(softmax_loss))
        self._sweep_start = objective
        self._previous_decrease = decrease
        self._sweep_first_row = len(self.rows)
        record = dict(sweep=last["sweep"], objective=objective, decrease=decrease,
                      identity_error=max(row["identity_error"] for row in rows),
                      seconds=sum(row["seconds"] for row in rows),
                      **{f"{row['side']}_decrease": row["decrease"] for row in rows},
                      **{name: last[name] for name in SWEEP_COLUMNS})
        if validation is not None:
            for name, value in validation.items():
                if name != "users":
                    last[f"validation_{name}"] = record[f"validation_{name}"] = float(value)
            record["improved"] = self._track_best(last["sweep"], validation)
        if self.tol > 0 and decrease <= self.tol * abs(objective):
            self.stop_reason = (f"converged: sweep {last['sweep']} decreased F by "
                                f"{decrease:.3g} <= tol * |F| = {self.tol * abs(objective):.3g}")
        return record

    def _predicted_sweeps(self, decrease, objective, rate, rate_bound):
        """Sweeps until one decreases F by tol * |F|, if decreases shrink by the rate
        observed (or, without one, by the bound)."""
        target = self.tol * abs(objective)
        if decrease <= target:
            return 0.0
        rho = rate if 0 < rate < 1 else rate_bound
        if not (self.tol > 0 and 0 < rho < 1):
            return math.inf
        return float(math.ceil(math.log(target / decrease) / math.log(rho)))

    def _track_best(self, sweep, validation):
        score = validation[self.metric] if self.metric in validation else None
        if score is None:
            return False
        if self.best_score is None or score > self.best_score:
            self.best_sweep, self.best_score = sweep, score
            self._evaluations_since_best = 0
            return True
        self._evaluations_since_best += 1
        if self.patience is not None and self._evaluations_since_best >= self.patience:
            self.stop_reason = (f"early stopping: validation {self.metric} did not improve "
                                f"for {self.patience} evaluations (best "
                                f"{self.best_score:.4f} after sweep {self.best_sweep})")
        return False

    @property
    def history(self):
        """A dict of numpy arrays, one entry per half step (see the class docstring)."""
        names = list(HALF_STEP_COLUMNS) + list(SWEEP_COLUMNS)
        for row in self.rows:
            names += [name for name in row if name not in names]
        columns = {}
        for name in names:
            values = [row.get(name, math.nan) for row in self.rows]
            columns[name] = np.array(values, dtype=str if name == "side" else
                                     np.int64 if name == "sweep" else np.float64)
        return columns

    def to_csv(self, path, overwrite=False):
        """Write `history` as CSV (atomically; an existing file only with overwrite=True)."""
        path = Path(path)
        check_directory(path.parent, [path.name], overwrite).mkdir(parents=True, exist_ok=True)
        history = self.history
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(history)
        writer.writerows(zip(*(column.tolist() for column in history.values())))
        write_atomic(path, lambda file: file.write(text.getvalue().encode()))

    def plot(self, path, overwrite=False):
        """A PNG: F - F_best (log scale) per sweep with the bound's slope beside it, and the
        validation metric (or F) against seconds. Needs matplotlib."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError("monitor.plot needs matplotlib: pip install 'rgals[plot]' "
                              "(or pip install matplotlib)") from error
        if not self.rows:
            raise ValueError("the monitor has recorded no half step yet: fit first")
        path = Path(path)
        check_directory(path.parent, [path.name], overwrite).mkdir(parents=True, exist_ok=True)
        history = self.history
        ends = np.isfinite(history["rate_bound"])  # the rows that close a sweep
        sweeps = np.concatenate(([0], history["sweep"][ends]))
        objective = np.concatenate(([self.initial_objective], history["objective"][ends]))
        gap = objective - objective.min()
        shown = gap > 0

        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        left.semilogy(sweeps[shown], gap[shown], "o-", label="F - F_best (observed)")
        bound = history["rate_bound"][ends]
        if shown.any():
            # from the first gap on, shrink by each sweep's rate bound
            first = int(np.flatnonzero(shown)[0])
            guide = gap[first] * np.concatenate(([1.0], np.cumprod(bound[first:])))
            left.semilogy(sweeps[first:], guide[:len(sweeps) - first], "--",
                          label="rate bound 1 - mu / L")
        left.set_xlabel("sweep")
        left.set_ylabel("F - F_best")
        left.set_title("objective gap (bound valid near a minimum)")
        left.legend()

        seconds = np.cumsum(history["seconds"])[ends]
        name = f"validation_{self.metric}" if self.metric else None
        if name in history and np.isfinite(history[name][ends]).any():
            values = history[name][ends]
            finite = np.isfinite(values)
            right.plot(seconds[finite], values[finite], "o-")
            right.set_ylabel(f"validation {self.metric}")
        else:
            right.plot(seconds, objective[1:], "o-")
            right.set_ylabel("F")
        right.set_xlabel("seconds (half steps only)")
        right.set_title("progress against time")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120)
        plt.close(figure)
        write_atomic(path, lambda file: file.write(buffer.getvalue()))


def softmax_loss(user_factors, item_factors, user_items, users, batch=256):
    """The exact softmax loss the RG losses expand, averaged over `users`:
    sum_i c_ui (log sum_j exp(s_uj) - s_ui) / sum_i c_ui, with s = p_u . q_j."""
    total, counted = 0.0, 0
    for start in range(0, len(users), batch):
        rows = users[start:start + batch]
        interactions = user_items[rows]
        weights = np.asarray(interactions.sum(axis=1)).ravel()
        keep = weights > 0
        if not keep.any():
            continue
        scores = (user_factors[rows] @ item_factors.T).astype(np.float64)
        top = scores.max(axis=1, keepdims=True)
        log_normaliser = top[:, 0] + np.log(np.exp(scores - top).sum(axis=1))
        observed = np.asarray(interactions.multiply(scores).sum(axis=1)).ravel()
        per_user = (weights * log_normaliser - observed)[keep] / weights[keep]
        total += per_user.sum()
        counted += int(keep.sum())
    return total / counted if counted else math.nan
