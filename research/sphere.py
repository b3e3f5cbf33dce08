"""Probe: design.md 1.6 candidate E, rg2 with every item factor on a sphere (bench/RESULTS.md).

Status: rejected: bench/RESULTS.md, "Beyond the expansion at s = 0", E.

    python -m research.sphere --dataset health --alpha 0.1 --regularization 0.03 --radii 0.5 1 2

The cosine softmax ranks by direction alone; here the item step of rg2 minimises its
quadratic q^T A_i q - 2 b_i^T q exactly subject to |q_i| = r (not a projection after an
unconstrained step), so that item norms, and with them popularity, leave the scores;
users stay unconstrained (their norm does not change a user's ranking). The constrained
minimiser is the trust-region subproblem's: q = (A_i + mu I)^-1 b_i with the multiplier
mu > -eig_min(A_i) that puts q on the sphere, from each A_i's eigendecomposition (d^3 per
item). The user half steps are the engine's (CG, 3 steps). Each
radius r is given in units of the mean item norm of the rg2 model it starts from (`--warm`
rg2 sweeps). Validation only (10% of each user's items, seed 0).
"""

import argparse
import sys

import numpy as np

from bench import common
import rgals
from rgals.kernels import cpu
from rgals.metrics import ranking_metrics
from rgals.solve import solve_rows
from bench.common import script


def sphere_item_step(loss, P, Q, item_users, radius, chunk=2048):
    """Q <- argmin of each item's q^T A_i q - 2 b_i^T q subject to |q| = radius, exactly:
    q = (A_i + mu I)^-1 b_i with mu > -eig_min(A_i) and |q| = radius (the secular
    equation, by bisection in A_i's eigenbasis; `chunk` items at a time)."""
    systems = loss.item_systems(P, item_users)
    matrix = systems.interactions
    Pd = P.astype(np.float64)
    d = P.shape[1]
    pair_gram = np.zeros(matrix.nnz) if systems.pair_gram is None else systems.pair_gram
    rhs = cpu.weighted_row_sums(matrix.indptr, matrix.indices, systems.pair_rhs, Pd) + \
        systems.scale[:, None] * systems.rhs
    for start in range(0, Q.shape[0], chunk):
        stop = min(start + chunk, Q.shape[0])
        rows = np.repeat(np.arange(stop - start), np.diff(matrix.indptr[start:stop + 1]))
        pairs = slice(matrix.indptr[start], matrix.indptr[stop])
        others = Pd[matrix.indices[pairs]]
        A = systems.scale[start:stop, None, None] * systems.gram + \
            systems.reg[start:stop, None, None] * np.eye(d)
        np.add.at(A, rows, pair_gram[pairs, None, None] * others[:, :, None] *
                  others[:, None, :])
        values, vectors = np.linalg.eigh(A)
        beta = np.einsum("rdk,rd->rk", vectors, rhs[start:stop])
        # |q(mu)| falls from infinity to 0 as mu rises from -eig_min
        low = -values[:, 0] + 1e-12 * (1.0 + np.abs(values[:, 0]))
        high = low + np.linalg.norm(beta, axis=1) / radius + 1.0
        for _ in range(100):
            mu = 0.5 * (low + high)
            outside = np.linalg.norm(beta / (values + mu[:, None]), axis=1) > radius
            low, high = np.where(outside, mu, low), np.where(outside, high, mu)
        mu = 0.5 * (low + high)
        Q[start:stop] = np.einsum("rdk,rk->rd", vectors,
                                  beta / (values + mu[:, None])).astype(Q.dtype)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(common.DATASETS), default="health")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--regularization", type=float, default=0.001)
    parser.add_argument("--radii", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--warm", type=int, default=3)
    common.probe_options(parser, sweeps=15)
    args = parser.parse_args(argv)
    fit_part, validation = common.probe_data(args.dataset, args.seed)
    fit_part = fit_part.astype(np.float32).tocsr()
    item_users = fit_part.T.tocsr()
    for radius_units in args.radii:
        model = rgals.ALSSolver(factors=args.factors, alpha=args.alpha,
                                regularization=args.regularization, iterations=args.warm,
                                tol=0.0, random_state=args.seed, num_threads=args.threads)
        model.fit(fit_part, show_progress=False)
        P, Q, loss = model.user_factors_.copy(), model.item_factors_.copy(), model.loss_
        radius = radius_units * float(np.linalg.norm(Q, axis=1).mean())
        scores = []
        for _ in range(args.sweeps):
            solve_rows(loss.user_systems(Q, fit_part), P, "cg", cg_steps=3)
            sphere_item_step(loss, P, Q, item_users, radius)
            scores.append(ranking_metrics(P, Q, validation, fit_part, K=20)["ndcg@20"])
        best = int(np.argmax(scores))
        print(f"{args.dataset} r = {radius_units:g} x mean norm ({radius:.3g}): validation "
              f"N@20 by sweep {' '.join(f'{s:.4f}' for s in scores)}; best {scores[best]:.4f} "
              f"at {best + 1}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
