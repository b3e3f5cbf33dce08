"""rgals' quality against its training time as the embedding grows (bench/RESULTS.md).

    python -m bench.frontier --dataset gowalla --factors 64 128 256 512

For each embedding size: rg2 at the given alpha and regularization is fitted on the
training split minus a 10% validation split (seed 0) with validation NDCG@20 after every
sweep, stopped after 2 sweeps without improvement; the best sweep's count is then refitted
on the whole training split and the test split is read once. Prints the validation
curve's best, the half-step seconds to it, the refit's wall time and the test metrics.
"""

import argparse
import sys
import time

import numpy as np

from bench import common
import rgals
from rgals.data import validation_split
from rgals.metrics import ranking_metrics
from bench.common import script


def point(train, test, factors, params, sweeps, threads, seed):
    """(validation best, best sweep, half-step seconds to it, refit wall s, test metrics)."""
    fit_part, validation = validation_split(train, ratio=0.1, seed=seed)
    settings = dict(factors=factors, loss="rg2", num_threads=threads, random_state=seed,
                    tol=0.0)
    settings.update(params)
    model = rgals.ALSSolver(iterations=sweeps, early_stopping=True, patience=2, **settings)
    model.fit(fit_part, show_progress=False, validation=validation)
    monitor = model.monitor_
    seconds = monitor.history["seconds"].reshape(-1, 2).sum(axis=1)
    to_best = float(np.sum(seconds[:monitor.best_sweep]))
    start = time.perf_counter()
    final = rgals.ALSSolver(iterations=monitor.best_sweep, **settings).fit(
        train, show_progress=False)
    wall = time.perf_counter() - start
    metrics = ranking_metrics(final.user_factors_, final.item_factors_, test, train, K=20)
    return monitor.best_score, monitor.best_sweep, to_best, wall, metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(common.DATASETS), default="gowalla")
    parser.add_argument("--factors", type=common.positive, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--regularization", type=float, default=0.001)
    parser.add_argument("--popularity-exponent", type=float, default=0.0,
                        help="rg2's popularity prior gamma (design.md 1.6 B; 0: plain rg2)")
    parser.add_argument("--sweeps", type=common.positive, default=12)
    parser.add_argument("--threads", type=common.positive, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train, test = common.load(args.dataset)
    params = dict(alpha=args.alpha, regularization=args.regularization)
    if args.popularity_exponent:
        params["loss"] = {"name": "rg2", "popularity_exponent": args.popularity_exponent}
    rows = ["| factors | validation N@20 | best sweep | half-step s to best | refit wall s | "
            "test N@20 | test R@20 |", "|---|---|---|---|---|---|---|"]
    for factors in args.factors:
        best, sweep, to_best, wall, metrics = point(train, test, factors, params, args.sweeps,
                                                    args.threads, args.seed)
        rows.append(f"| {factors} | {best:.4f} | {sweep} | {to_best:.1f} | {wall:.1f} | "
                    f"{metrics['ndcg@20']:.4f} | {metrics['recall@20']:.4f} |")
        print(rows[-1], flush=True)
    print(f"\n{args.dataset}, rg2 alpha {args.alpha}, regularization {args.regularization}, "
          f"popularity exponent {args.popularity_exponent:g}, "
          f"{args.threads} threads, seed {args.seed}:")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
