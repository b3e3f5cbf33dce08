"""Probe: design.md 1.6 candidate B, rg2 expanded at a popularity prior (bench/RESULTS.md).

Status: adopted as an option, `RG2(popularity_exponent=gamma)` (0 by default):
bench/RESULTS.md, "Beyond the expansion at s = 0", B.

    python -m research.popularity --dataset gowalla --gammas 0 0.25 0.5 1 \
        --alphas 0.003 0.01 0.03 --regularizations 1e-4 1e-3 1e-2

rg2 expands n_u LSE(s_u) at s = 0, where the softmax is uniform. Expanding instead at
the item offsets o_j = log pi_j, pi_j proportional to n_j^gamma (n_j the item's
interactions), the softmax there is pi, and to second order (without the interactive
term, as rg2)

    n_u LSE(o + s_u) ~ w_u sum_j N pi_j (s_uj + 1)^2 + const,      w_u = n_u / (2N)

so the user Gram becomes Q^T diag(N pi) Q and each item's system gets the scale N pi_j:
`rgals.losses.RG2(popularity_exponent=gamma)`. gamma = 0 is rg2. The model's score is o_j + s_uj;
the probe ranks both with and without the offset. Every setting of the grid is fitted on
the training split minus a 10% validation split (seed 0), validation NDCG@20 after every
sweep, stopped after 2 evaluations without improvement. Validation only.
"""

import argparse
import itertools
import sys

import numpy as np

from bench import common
from rgals.losses import RG2
from rgals.metrics import ranking_metrics
from bench.common import script


def with_offset(P, Q, loss):
    """Factors whose products are s_uj + log pi_j (one column more)."""
    scale = np.ones(loss.n_items) if loss.item_scale is None else loss.item_scale
    with np.errstate(divide="ignore"):  # an item nobody chose: pi = 0, never ranked first
        offset = np.maximum(np.log(scale / loss.n_items), -1e30)
    return (np.hstack([P, np.ones((P.shape[0], 1), P.dtype)]),
            np.hstack([Q, offset[:, None].astype(Q.dtype)]))


def fit(loss, fit_part, validation, sweeps, factors, threads, seed):
    """Validation NDCG@20 at the best sweep without and with the offset, that sweep, s."""
    model, seconds = common.validation_fit(loss, fit_part, validation, sweeps, factors, threads,
                                        seed, patience=2)
    P, Q = with_offset(model.user_factors_, model.item_factors_, model.loss_)
    offset = ranking_metrics(P, Q, validation, fit_part, K=20)["ndcg@20"]
    return model.monitor_.best_score, offset, model.monitor_.best_sweep, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(common.DATASETS), default="gowalla")
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.003, 0.01, 0.03])
    parser.add_argument("--regularizations", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2])
    common.probe_options(parser, sweeps=15)
    args = parser.parse_args(argv)
    fit_part, validation = common.probe_data(args.dataset, args.seed)
    print(f"{args.dataset}, {args.factors} factors, seed {args.seed}\n")
    print("| gamma | alpha | regularization | validation N@20 | with offset | best sweep | s |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for gamma, alpha, lam in itertools.product(args.gammas, args.alphas, args.regularizations):
        loss = RG2(popularity_exponent=gamma, alpha=alpha, regularization=lam)
        plain, offset, sweep, seconds = fit(loss, fit_part, validation, args.sweeps,
                                            args.factors, args.threads, args.seed)
        print(f"| {gamma:g} | {alpha:g} | {lam:g} | {plain:.4f} | {offset:.4f} | {sweep} | "
              f"{seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
