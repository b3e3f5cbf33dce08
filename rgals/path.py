"""RG2/RGx's default regularization, chosen on a short warm-started path.

The best lam differs 10-30x between the shared datasets at the same alpha N, and no
statistic of the data tried tells which (bench/RESULTS.md, issue 16): the Amazon sets
want it near the data rule's value (`RG2.resolve`), just below the collapse cliff;
Gowalla wants it far lower. Planted data shows the pattern: weak structure beyond
popularity wants strong shrinkage, strong local structure (communities) a weak one.

So a fit with regularization=None holds out HOLDOUT_RATIO of the interactions of up to
HOLDOUT_USERS users, runs FIRST_SWEEPS sweeps at the rule's lam on the rest, then divides
lam by STEP for STAGE_SWEEPS warm-started sweeps at a time while the holdout's NDCG@20
improves by more than MIN_GAIN (at most MAX_STEPS times). When the first step down
loses, the path tries lam * UP_STEP instead, from the first stage's factors, and goes on
up while the holdout gains, below UP_CAP of the lam where every factor collapses (weak
structure beyond popularity wants shrinkage up to that cliff: the planted synthetic-wide
set, issue 29). Last, when a neighbour of the best stage's lam scored within
BETWEEN_WITHIN of it, the path tries the lam halfway between them (geometrically), from
the best stage's factors: a steep, narrow peak just below the cliff falls between the
grid's lams on sparse data (issue 29). A step up or between that loses is dropped: the
factors go back to where the path was before it and its sweeps do not count, so such a
fit equals the path without it. The best stage's lam is kept, and the fit's remaining
sweeps run on all the data, from the factors the path reached. The path's sweeps count
toward `iterations` (a step between that wins counts from the best stage it started
from); what it adds is a holdout scoring per stage, the dropped steps' sweeps and a
second prepared copy of the data.
"""

import copy
import dataclasses
import logging
import math
import time

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from .data.splits import holdout_split
from .training import run

log = logging.getLogger("rgals")

HOLDOUT_USERS = 3000
HOLDOUT_RATIO = 0.1
MIN_USERS = 100  # fewer users that can hold out: the rule's lam, no path
FIRST_SWEEPS = 6
STAGE_SWEEPS = 3
FINAL_SWEEPS = 2  # at least, on all the data
STEP = 3.0
UP_STEP = 2.0  # up, a smaller step: the collapse cliff is near (design.md 1.7)
UP_CAP = 0.5  # of collapse_regularization: the way up stops there
MAX_STEPS = 4
MIN_GAIN = 0.01
BETWEEN_WITHIN = 0.05  # a neighbour this close to the best stage: try the lam between
METRIC_K = 20


@dataclasses.dataclass
class PathStage:
    """One stage of the path: lam, the fit's sweeps by its end, the holdout's NDCG@20 and
    the wall seconds since the path began, by its end (its holdout scoring included; 0
    where not recorded: a fit resumed from a checkpoint). A step that lost is dropped:
    its sweeps are those of the stage before it."""

    regularization: float
    sweeps: int
    holdout_ndcg: float
    seconds: float = dataclasses.field(default=0.0, compare=False)


def uses_path(loss, iterations):
    """Whether a fit chooses lam on the path: a loss whose regularization the data decides,
    left at None, with room in `iterations` for one step down and the final sweeps."""
    declared = loss.hyperparameters.get("regularization")
    return (declared is not None and declared.from_data and loss.regularization is None
            and iterations >= FIRST_SWEEPS + STAGE_SWEEPS + FINAL_SWEEPS)


def path_holdout(user_counts, rows_of, rng):
    """(held out, the users evaluated): HOLDOUT_RATIO of the interactions of up to
    HOLDOUT_USERS users with two or more (`user_counts`: each user's stored pairs) held
    out, at least one each, as `holdout_split` does; `rows_of(users)` gives their
    training rows (a CSR). None when fewer than MIN_USERS users can hold out. The fit
    part is the data less `held` (an executor's `without`); the same draws from the same
    `rng` whether the rows live in one process or on Dask workers."""
    eligible = np.flatnonzero(np.asarray(user_counts) >= 2)
    if len(eligible) < MIN_USERS:
        return None
    users = np.sort(rng.choice(eligible, min(HOLDOUT_USERS, len(eligible)), replace=False))
    rows = rows_of(users)
    _, held_rows = holdout_split(rows, HOLDOUT_RATIO, seed=rng)
    per_user = np.zeros(len(user_counts), dtype=np.int64)
    per_user[users] = np.diff(held_rows.indptr)
    held = sp.csr_matrix((held_rows.data, held_rows.indices,
                          np.concatenate(([0], np.cumsum(per_user)))),
                         shape=(len(user_counts), rows.shape[1]))
    return held, users


def regularization_path(spec, executor, held, users, iterations, *, identity_tolerance,
                        show_progress=True, progress=None):
    """Run the path on `executor` (one of the fit part: the data less `held`) from
    `spec`'s lam (resolved by the rule), updating the factors it shares with the whole
    data's executor; returns (the chosen lam, the sweeps run, the PathStages). The path
    fits the plain loss: top-K weights need scores of a fit on the whole data, and come
    with the remaining sweeps. `progress`: the fit's rgals.training.ProgressBar, which
    the path's sweeps move (else a bar of its own).

    Down first: lam / STEP while the holdout gains. When the first step down loses, the
    path goes back to the first stage's factors and tries lam * UP_STEP, then on up
    while it gains, never above UP_CAP of the lam where the factors collapse. Then a step
    between the best lam and a close neighbour (`between_lam`). The fit goes on from the
    best stage's factors."""
    plain = copy.copy(spec)
    if getattr(plain, "top_k", None) is not None:
        plain.top_k = None
    budget = iterations - FINAL_SWEEPS
    planned = min(budget, FIRST_SWEEPS + MAX_STEPS * STAGE_SWEEPS)
    bar = (progress.open("choosing regularization") if progress is not None else
           tqdm(total=planned, disable=not show_progress, unit="sweep",
                desc=f"rgals {spec.name}: choosing regularization"))
    stages = []
    began = time.perf_counter()

    def stage(lam, sweeps, after=None):
        """`sweeps` at `lam` from the factors now, scored on the holdout; `after`: the
        fit's sweeps these factors had (by default the last stage's)."""
        plain.regularization = lam
        executor.start(executor.bind(plain))
        run(executor, sweeps, tol=0.0, identity_tolerance=identity_tolerance)
        done = sweeps + (after if after is not None else stages[-1].sweeps if stages else 0)
        score = executor.validation_metrics(held, METRIC_K, ("ndcg",),
                                            users=users)[f"ndcg@{METRIC_K}"]
        stages.append(PathStage(lam, done, float(score), time.perf_counter() - began))
        bar.update(sweeps)
        bar.set_postfix({"lam": f"{lam:.3g}", f"holdout ndcg@{METRIC_K}": f"{score:.4f}"})
        log.info("regularization path: lam %.3g, %d sweeps, holdout ndcg@%d %.4f",
                 lam, done, METRIC_K, score)
        return stages[-1]

    def up_from(lam):
        """The next lam up, within UP_CAP of the collapse (None: no room)."""
        target = lam * UP_STEP
        ceiling = UP_CAP * plain.collapse(executor.operator, executor.totals,
                                          stop_above=target / UP_CAP)
        step = min(target, ceiling)
        return step if step > lam * (1.0 + MIN_GAIN) else None

    def gains(tried):
        return tried.holdout_ndcg > best.holdout_ndcg * (1.0 + MIN_GAIN)

    def drop(tried, went_on):
        """A stage that lost and adds no sweep: the fit goes on from `went_on`."""
        executor.restore(went_on)
        stages[-1] = dataclasses.replace(tried, sweeps=stages[-2].sweeps)

    try:
        best = stage(spec.regularization, FIRST_SWEEPS)
        at_best = executor.snapshot()  # the best stage's factors: a step up or between
        went_on = None  # where the path went on from before trying up
        move = ("down", best.regularization / STEP)
        while move is not None and stages[-1].sweeps + STAGE_SWEEPS <= budget \
                and len(stages) <= MAX_STEPS:
            direction, lam = move
            tried = stage(lam, STAGE_SWEEPS)
            move = None
            if gains(tried):
                best = tried
                at_best = executor.snapshot()
                move = (direction, lam / STEP) if direction == "down" else (
                    None if (up := up_from(lam)) is None else ("up", up))
            elif direction == "down" and len(stages) == 2 and hasattr(plain, "collapse"):
                # the first step down lost: up, from the first stage's factors
                up = up_from(best.regularization)
                if up is not None:
                    went_on = executor.snapshot()
                    executor.restore(at_best)
                    move = ("up", up)
            elif direction == "up":
                # a step up that lost is dropped and adds no sweep to the fit's count:
                # the fit goes on as without it (from the step down, or the best step up)
                drop(tried, went_on if best is stages[0] else at_best)
        between = between_lam(stages, best)
        if between is not None and best.sweeps + STAGE_SWEEPS <= budget:
            # a step between the best lam and its better neighbour, from the best stage's
            # factors: the holdout's curve peaks between the grid's lams (issue 29)
            went_on = executor.snapshot()
            executor.restore(at_best)
            tried = stage(between, STAGE_SWEEPS, after=best.sweeps)
            if gains(tried):
                best = tried
            else:
                drop(tried, went_on)
        bar.set_postfix({"lam chosen": f"{best.regularization:.3g}",
                         f"holdout ndcg@{METRIC_K}": f"{best.holdout_ndcg:.4f}"})
    finally:
        if progress is None:
            bar.total = stages[-1].sweeps if stages else 0  # it may stop before the plan
            bar.close()
    return best.regularization, stages[-1].sweeps, stages


def between_lam(stages, best):
    """The geometric midpoint of the best stage's lam and that of the better of its
    nearest tried neighbours (one below, one above), when that neighbour scored within
    BETWEEN_WITHIN of the best: the holdout is nearly flat between them, so its peak may
    lie there. None otherwise: far below, the peak sits near the best lam and a step
    between would land on the steep side (issue 29)."""
    lam = best.regularization
    below = max((stage for stage in stages if stage.regularization < lam), default=None,
                key=lambda stage: stage.regularization)
    above = min((stage for stage in stages if stage.regularization > lam), default=None,
                key=lambda stage: stage.regularization)
    neighbours = [stage for stage in (below, above) if stage is not None]
    if not neighbours:
        return None
    better = max(neighbours, key=lambda stage: stage.holdout_ndcg)
    if better.holdout_ndcg < (1.0 - BETWEEN_WITHIN) * best.holdout_ndcg:
        return None
    return math.sqrt(lam * better.regularization)
