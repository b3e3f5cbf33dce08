"""Seconds for a full evaluation: every test user ranked over every item, training masked.

    python -m bench.evaluation_time --threads 2
    python -m bench.evaluation_time --dataset gowalla --factors 64 128 --repeats 5

Fits a default model (15 sweeps, seed 0) on the dataset's training split, then times
`rgals.metrics.ranking_metrics` (NDCG, Recall, ... at 10 and 20) on its test split: the
first call apart (JIT or cache load), then the median of --repeats calls. Beside it, the
same evaluation with the norm-bound pruning of `rgals.ranking.top_lists` switched off,
timed the same way in the same run; the metrics of both must agree (to 1e-4: the two
paths round the scores in different batches).
"""

import argparse
import statistics
import sys
import time

import numba
from threadpoolctl import threadpool_limits

import rgals
from bench.common import DATASETS, load, positive, script
from rgals import ranking
from rgals.metrics import ranking_metrics


def time_evaluation(model, train, test, repeats):
    """(first call seconds, median seconds, metrics)."""
    def evaluate():
        start = time.perf_counter()
        metrics = ranking_metrics(model.user_factors_, model.item_factors_, test, train,
                                  K=(10, 20))
        return time.perf_counter() - start, metrics

    first, metrics = evaluate()
    return first, statistics.median(evaluate()[0] for _ in range(repeats)), metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(DATASETS), default="gowalla")
    parser.add_argument("--factors", type=positive, nargs="+", default=[64])
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--repeats", type=positive, default=5)
    args = parser.parse_args(argv)
    train, test = load(args.dataset)
    numba.set_num_threads(args.threads)
    print(f"{args.dataset}: {train.shape[0]} users x {train.shape[1]} items, {test.nnz} test "
          f"interactions; {args.threads} threads, median of {args.repeats} after a first call")
    print()
    print("| factors | pruned: first call s | pruned s | unpruned s | speed-up | ndcg@20 |")
    print("|---|---|---|---|---|---|")
    for factors in args.factors:
        model = rgals.ALSSolver(factors=factors, num_threads=args.threads,
                                random_state=0).fit(train, show_progress=False)
        with threadpool_limits(limits=1, user_api="blas"):
            first, pruned, metrics = time_evaluation(model, train, test, args.repeats)
            threshold, ranking._PRUNE_QUERIES = ranking._PRUNE_QUERIES, float("inf")
            try:
                _, unpruned, unpruned_metrics = time_evaluation(model, train, test,
                                                                args.repeats)
            finally:
                ranking._PRUNE_QUERIES = threshold
        # equal up to the rounding of the scores, which the two paths sum in different
        # batches (a near tie may swap places)
        change = max(abs(metrics[key] - unpruned_metrics[key]) for key in metrics)
        if change > 1e-4:
            raise AssertionError(f"pruning changed the metrics: {metrics} against "
                                 f"{unpruned_metrics}")
        print(f"| {factors} | {first:.3f} | {pruned:.3f} | {unpruned:.3f} | "
              f"{unpruned / pruned:.1f}x | {metrics['ndcg@20']:.4f} |", flush=True)


if __name__ == "__main__":
    sys.exit(script(main))
