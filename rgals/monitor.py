"""The convergence monitor attached to every fit (design.md 1.5).

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
`rgals.solve.row_bounds` and each loss's `hessian_bounds`).

What it costs is the fit's choice (rgals.training): monitor="full" measures the exact F
after every half step (tests, debugging); monitor="sweep", the default, carries F
forward by the solvers' decreases and measures it exactly on evaluation sweeps and at
the end, where the descent identity is checked over the sweeps since the last exact F.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path

import numpy as np

from .files import prepare_directory, write_atomic
from .types import FilePath

HALF_STEP_COLUMNS = ("sweep", "side", "segment", "objective", "exact", "decrease",
                     "identity_error", "seconds", "hessian_min", "hessian_max")
SWEEP_COLUMNS = ("rate", "rate_bound", "predicted_sweeps", "within_bound", "softmax_loss")
# rates may exceed the bound by rounding when the decreases are tiny
_RATE_SLACK = 1e-6


class ConvergenceMonitor:
    """Records a fit half step by half step; `solver.monitor_` after `fit`.

    It records; the stopping policies (rgals.training) decide. tol: the tolerance the
    `predicted_sweeps` column aims at. identity_tolerance: largest accepted
    |(F_before - F_after) - decrease| / |F|; beyond it the monitor warns once
    (RuntimeWarning) that a half step does not match the loss. metric: the validation
    metric (e.g. "ndcg@20") whose best value and sweep it keeps (`best_sweep`,
    `best_score`).

    `history` is a dict of plain columns, one entry per half step. `objective` is exact
    where `exact` is 1; elsewhere (monitor="sweep") it is the last exact value minus the
    solvers' decreases since, and `identity_error` is NaN. An exact value measured after
    estimates checks them all: its row's `identity_error` is the estimate's error.
    Sweep-level columns (rate, rate_bound, predicted_sweeps, within_bound, softmax_loss
    and the validation metrics) are filled on the row that ends each sweep (the item half
    step in a fit) and NaN on the others. `segment` counts changes of the objective (a
    loss's per-sweep refresh): rates never compare sweeps of different segments. What a
    refresh reports (e.g. how far the top-K weights moved) is in `refresh_<name>`
    columns on the first half step after it.
    """

    def __init__(self, tol=1e-4, identity_tolerance=1e-6, metric=None):
        self.tol = tol
        self.identity_tolerance = identity_tolerance
        self.metric = metric
        self.rows = []
        self.initial_objective = None
        self.stop_reason = None
        self.best_sweep = None
        self.best_score = None
        self.evaluations_since_best = 0
        self.segment = 0
        self._objective = None
        self._last_exact = None
        self._sweep_start = None
        self._sweep_first_row = 0
        self._previous_decrease = None
        self._warned = False
        self._refresh = {}

    def start(self, objective):
        """F at the initial factors."""
        self.initial_objective = self._objective = self._sweep_start = float(objective)
        self._last_exact = self.initial_objective

    def start_segment(self, objective, new_fit=False):
        """The objective changed between sweeps (a refresh): `objective` is the new F at
        the current factors. Rates restart; tol compares only within the segment.
        new_fit: a warm start on new data: the best validation score starts again too."""
        if new_fit:
            self.best_sweep = self.best_score = self.stop_reason = None
            self.evaluations_since_best = 0
        self.segment += 1
        self._objective = self._sweep_start = self._last_exact = float(objective)
        self._previous_decrease = None

    def note_refresh(self, values):
        """What a refresh of the loss's frozen quantities reported (name -> number); it
        goes on the next half step's row as refresh_<name>."""
        self._refresh = {f"refresh_{name}": float(value) for name, value in values.items()}

    def half_step(self, sweep, side, decrease, objective, seconds, hessian, magnitude=None):
        """Record one half step. `objective`: the exact F after it, or None to carry the
        estimate F_before - decrease. `hessian`: (lowest, highest) eigenvalue bounds.
        `magnitude`: see record_exact."""
        estimate = self._objective - float(decrease)
        lowest, highest = hessian
        self.rows.append(dict(
            sweep=sweep, side=side, segment=self.segment, objective=estimate, exact=0.0,
            decrease=float(decrease), identity_error=math.nan, seconds=float(seconds),
            hessian_min=lowest, hessian_max=highest,
            **{name: math.nan for name in SWEEP_COLUMNS}, **self._refresh))
        self._refresh = {}
        self._objective = estimate
        if objective is not None:
            self.record_exact(objective, magnitude)

    def record_exact(self, objective, magnitude=None):
        """The exact F after the last recorded half step: replaces the estimate there and
        checks it (the descent identity, over every half step since the last exact F).

        `magnitude`: the size of the terms F sums (Loss.objective(..., magnitude=True)).
        F's rounding scales with it, not with |F|, when the terms cancel: the error is
        measured relative to the larger of the two, so float32 rounding is no alarm."""
        row = self.rows[-1]
        objective = float(objective)
        estimate = row["objective"]
        # relative to the objective's size over the checked steps (F can pass near 0)
        scale = max(abs(self._last_exact), abs(estimate), abs(objective), magnitude or 0.0,
                    np.finfo(float).tiny)
        row.update(objective=objective, exact=1.0,
                   identity_error=abs(estimate - objective) / scale)
        self._objective = self._last_exact = objective
        if row["identity_error"] > self.identity_tolerance and not self._warned:
            self._warned = True
            warnings.warn(
                f"the objective after the {row['side']} half step of sweep {row['sweep']} is "
                f"{objective:.6g}, but the solvers' decreases give {estimate:.6g} (relative "
                f"error {row['identity_error']:.2g}): the solved systems do not match the "
                "loss, or rounding is large for this dtype (try dtype=np.float64)",
                RuntimeWarning, stacklevel=3)

    def end_sweep(self, objective=None, softmax_loss=None, validation=None, magnitude=None):
        """Close the sweep whose half steps were just recorded; returns its record.

        objective: the exact F after the sweep, if measured now. validation: a dict of
        metrics (rgals.metrics.ranking_metrics) when the fit evaluated this sweep.
        """
        rows = self.rows[self._sweep_first_row:]
        if not rows:
            raise RuntimeError("end_sweep() needs at least one half_step() since the last one")
        if objective is not None:
            self.record_exact(objective, magnitude)
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
        errors = [row["identity_error"] for row in rows if row["exact"]]
        record = dict(sweep=last["sweep"], segment=last["segment"], objective=objective,
                      exact=bool(last["exact"]), decrease=decrease,
                      identity_error=max(errors) if errors else math.nan,
                      seconds=sum(row["seconds"] for row in rows),
                      **{f"{row['side']}_decrease": row["decrease"] for row in rows},
                      **{name: last[name] for name in SWEEP_COLUMNS})
        if validation is not None:
            for name, value in validation.items():
                if name != "users":
                    last[f"validation_{name}"] = record[f"validation_{name}"] = float(value)
            record["improved"] = self._track_best(last["sweep"], validation)
        return record

    def _predicted_sweeps(self, decrease, objective, rate, rate_bound):
        """Sweeps until one decreases F by tol * |F|, if decreases shrink by the rate
        observed (or, without one, by the bound)."""
        target = self.tol * abs(objective)
        if not (math.isfinite(decrease) and math.isfinite(target)):
            return math.nan  # never raise from the monitor
        if decrease <= target:
            return 0.0
        rho = rate if 0 < rate < 1 else rate_bound
        if not (target > 0 and 0 < rho < 1):  # target 0: F = 0 or tol = 0, never reached
            return math.inf
        return float(math.ceil(math.log(target / decrease) / math.log(rho)))

    def _track_best(self, sweep, validation):
        score = validation[self.metric] if self.metric in validation else None
        if score is None:
            return False
        if self.best_score is None or score > self.best_score:
            self.best_sweep, self.best_score = sweep, score
            self.evaluations_since_best = 0
            return True
        self.evaluations_since_best += 1
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
                                     np.int64 if name in ("sweep", "segment") else np.float64)
        return columns

    def to_csv(self, path: FilePath, overwrite: bool = False) -> None:
        """Write `history` as CSV (atomically; an existing file only with overwrite=True)."""
        path = Path(path)
        prepare_directory(path.parent, [path.name], overwrite)
        history = self.history
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(history)
        writer.writerows(zip(*(column.tolist() for column in history.values())))
        write_atomic(path, lambda file: file.write(text.getvalue().encode()))

    def plot(self, path: FilePath, overwrite: bool = False) -> None:
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
        prepare_directory(path.parent, [path.name], overwrite)
        history = self.history
        ends = np.isfinite(history["rate_bound"])  # the rows that close a sweep
        # F before the first sweep recorded (sweep 0, or the last of a fit's path)
        sweeps = np.concatenate(([history["sweep"][0] - 1], history["sweep"][ends]))
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
    total, counted = softmax_parts(user_factors, item_factors, user_items, users, batch)
    return total / counted if counted else math.nan


def softmax_parts(user_factors, item_factors, user_items, users, batch=256):
    """(the per-user softmax losses of `users` summed, the users counted): what
    `softmax_loss` averages, summable across blocks of users."""
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
    return total, counted
