"""Probe: rgals' gap to full-softmax training as the catalogue shrinks (bench/RESULTS.md).

Status: measurement. The gap grows with the catalogue (rg2 / softmax 0.99 at 2k items,
0.86 at 41k): bench/RESULTS.md, issue 5.

    python -m research.catalogue_size --dataset gowalla --items 2000 8000 40988

For each N: keep the N most popular training items of the dataset and the users left with
at least two of them, hold 10% of each user's items out for validation (seed 0), and give
the best validation NDCG@20 of rg2 over a small grid (alpha x regularization, at most 20
sweeps) and of the full softmax trained with Adam (learning rate 1e-3, temperature 0.1 and
0.2, at most --epochs epochs), each run stopped after 3 evaluations without improvement.
64 factors, 2 threads, the training loops of bench/run.py. Validation only: the test
split is never read.
"""

import argparse
import sys

import numpy as np

from bench import common, run
from rgals.data import validation_split
from bench.common import script

RG2_GRID = [{"loss": "rg2", "alpha": alpha, "regularization": regularization}
            for alpha in (0.003, 0.01, 0.03, 0.1) for regularization in (1e-3, 1e-2)]
SOFTMAX_GRID = [{"learning_rate": 1e-3, "temperature": temperature}
                for temperature in (0.1, 0.2)]


def most_popular(matrix, n_items):
    """The columns of the n_items most interacted-with items (ties: lower id first), and
    the rows left with at least two interactions (one for validation, one to fit)."""
    popularity = np.diff(matrix.tocsc().indptr)
    keep = np.sort(np.argsort(-popularity, kind="stable")[:n_items])
    kept = matrix[:, keep].tocsr()
    return kept[np.flatnonzero(np.diff(kept.indptr) >= 2)].tocsr()


def best_setting(method, grid, fit_part, validation, steps, threads, seed):
    """(best validation NDCG@20, its setting) over `grid`."""
    found = []
    for params in grid:
        curve = run.Curve(validation, fit_part, patience=3)
        run.train(method, params, fit_part, steps, threads, seed, curve)
        found.append((curve.best()[2], params))
        print(f"  {method} {params}: {curve.best()[2]:.4f}", flush=True)
    return max(found, key=lambda pair: pair[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(common.DATASETS), default="gowalla")
    parser.add_argument("--items", type=common.positive, nargs="+", default=[2000, 8000])
    parser.add_argument("--epochs", type=common.positive, default=30)
    parser.add_argument("--threads", type=common.positive, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train, _ = common.load(args.dataset)
    rows = ["| items | users | interactions | rg2 | softmax | rg2 / softmax |",
            "|---|---|---|---|---|---|"]
    for n_items in args.items:
        matrix = most_popular(train, n_items)
        print(f"{n_items} items: {matrix.shape[0]} users, {matrix.nnz} interactions",
              flush=True)
        fit_part, validation = validation_split(matrix, ratio=0.1, seed=args.seed)
        rg2, rg2_params = best_setting("rgals-rg2", RG2_GRID, fit_part, validation, 20,
                                       args.threads, args.seed)
        softmax, softmax_params = best_setting("softmax", SOFTMAX_GRID, fit_part, validation,
                                               args.epochs, args.threads, args.seed)
        rows.append(f"| {matrix.shape[1]} | {matrix.shape[0]} | {matrix.nnz} | {rg2:.4f} "
                    f"(alpha {rg2_params['alpha']}, lam {rg2_params['regularization']}) | "
                    f"{softmax:.4f} (tau {softmax_params['temperature']}) | "
                    f"{rg2 / softmax:.3f} |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
