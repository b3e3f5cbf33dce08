"""Warm starts on new data: the sweeps and the time to reach a full refit's quality.

    python -m bench.warm_start --dataset gowalla --threads 2

The dataset's training split is cut as design.md 3 says (10% of each user's interactions
held out for validation, seed 0); a random --new fraction (5%) of the rest's
interactions is "new": the old model is a default fit (seed 0) on the others. On all of
it, a full default refit (its validation NDCG@20 is the target) is timed against warm
starts from the old model, `fit(..., warm_start=True)` with 1, 2, ... sweeps, each from
the old model and timed whole (the wall time a user pays, data preparation included),
for --sweeps (4), each the median of --repeats (3), reporting the first within --within
(1%) of the refit's validation NDCG@20. Beside them, without any sweep:
`partial_fit_users` of the users with new interactions (their rows solved against the
old item factors). A first fit compiles or loads the kernels, untimed.
"""

import argparse
import copy
import statistics
import sys
import time

import numba
import numpy as np

import rgals
from bench.common import DATASETS, environment, load, positive, script
from rgals.data import validation_split
from rgals.metrics import ranking_metrics


def without_new(matrix, fraction, seed):
    """`matrix` less a random `fraction` of its stored interactions (the same shape)."""
    rng = np.random.default_rng(seed)
    old = matrix.copy()
    old.data[rng.random(old.nnz) < fraction] = 0.0
    old.eliminate_zeros()
    return old


def ndcg(model, validation, train):
    return ranking_metrics(model.user_factors_, model.item_factors_, validation, train,
                           K=(20,), metrics=("ndcg",), show_progress=False)["ndcg@20"]


def timed(update, model, repeats):
    """The median wall seconds of update(copy of model) over `repeats` copies, and the
    last updated copy."""
    seconds = []
    for _ in range(repeats):
        updated = copy.deepcopy(model)
        start = time.perf_counter()
        update(updated)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), updated


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(DATASETS), default="gowalla")
    parser.add_argument("--new", type=float, default=0.05)
    parser.add_argument("--within", type=float, default=0.01)
    parser.add_argument("--sweeps", type=positive, default=4)
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--repeats", type=positive, default=3)
    args = parser.parse_args(argv)
    numba.set_num_threads(args.threads)
    train, _ = load(args.dataset)  # the test split is not read
    fit_part, validation = validation_split(train, ratio=0.1, seed=0)
    old_part = without_new(fit_part, args.new, seed=1)

    def fitted_on(matrix, **options):
        return lambda model: model.fit(matrix, show_progress=False, **options)

    default = rgals.ALSSolver(random_state=0, num_threads=args.threads)
    fitted_on(old_part)(copy.deepcopy(default))  # kernels compiled or loaded: not timed
    old_seconds, old = timed(fitted_on(old_part), default, 1)
    refit_seconds, refit = timed(fitted_on(fit_part), default, args.repeats)
    target = ndcg(refit, validation, fit_part)
    print(f"{args.dataset}: {fit_part.shape[0]} users x {fit_part.shape[1]} items; "
          f"{fit_part.nnz - old_part.nnz} new interactions ({args.new:.0%}) on "
          f"{old_part.nnz}; {args.threads} threads; {environment()}")
    print(f"old model: {old_seconds:.2f} s, validation NDCG@20 "
          f"{ndcg(old, validation, fit_part):.4f} on the new data")
    print(f"full refit: {refit_seconds:.2f} s, validation NDCG@20 {target:.4f} "
          f"(lam {refit.loss_.regularization:.3g}; the old model's "
          f"{old.loss_.regularization:.3g})")
    print()
    print("| update | wall s | of the refit's time | validation NDCG@20 | of the refit's |")
    print("|---|---|---|---|---|")

    def row(name, seconds, model):
        score = ndcg(model, validation, fit_part)
        print(f"| {name} | {seconds:.2f} | {seconds / refit_seconds:.2f} | {score:.4f} | "
              f"{score / target:.3f} |")
        return score

    changed = np.flatnonzero(np.diff(fit_part.indptr) != np.diff(old_part.indptr))
    row(f"partial_fit_users ({changed.size} users)", *timed(
        lambda model: model.partial_fit_users(changed, fit_part[changed]), old, args.repeats))
    reached = None
    for sweeps in range(1, args.sweeps + 1):
        seconds, warm = timed(fitted_on(fit_part, warm_start=True),
                              old.set_params(iterations=sweeps), args.repeats)
        score = row(f"warm start, {sweeps} sweep{'s' * (sweeps > 1)}", seconds, warm)
        if reached is None and score >= (1 - args.within) * target:
            reached = sweeps, seconds
    print()
    if reached is None:
        print(f"no warm start within {args.within:.0%} of the refit in {args.sweeps} sweeps")
    else:
        print(f"within {args.within:.0%} of the refit after {reached[0]} warm sweeps, in "
              f"{reached[1] / refit_seconds:.2f} of its time")
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
