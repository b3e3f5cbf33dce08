"""Probe: design.md 1.6 candidate A, the softmax re-expanded at the current scores (RESULTS.md).

Status: rejected, no better than rg2 at several times its cost: bench/RESULTS.md,
"Beyond the expansion at s = 0", A.

    python -m research.reexpansion --dataset gowalla --temperatures 1 0.5 --warm 2 5

rg2 replaces n_u LSE(s_u) by its expansion at s = 0. Here each half step expands the
tempered softmax term n_u tau LSE(s_u / tau) at the current scores instead (a Newton step
of the softmax loss, alpha's squared term and the regularisation of rg2 kept):

    gradient   n_u sum_j pi_uj q_j                      (exact, from one scoring pass)
    curvature  (n_u / tau) sum_j pi_uj q_j q_j^T        (-pi pi^T dropped: more curvature)
             ~ (n_u / tau) (c_u G + sum_{j in T_u} (pi_uj - c_u) q_j q_j^T)

with T_u the user's `--top` highest-scored items and c_u the mean softmax mass of the
others (the curvature floor). At s = 0 this is rg2 exactly. The item step uses the same
model at the updated user factors, so each sweep makes two passes over all users x items
(the user step's and the item step's). The per-row linear term enters the existing row
systems as one extra pair per row whose "other" row is that term (rhs weight 1, Gram
weight 0), so the engine's own CG kernels solve the systems.

Starts from `--warm` sweeps of rg2 (the same alpha, regularization and seed), then runs
`--sweeps` re-expanded sweeps with validation NDCG@20 after each. Validation only
(10% of each user's training items, seed 0): the test split is never read.
"""

import argparse
import itertools
import sys
import time

import numba
import numpy as np
import scipy.sparse as sp

from bench import common
import rgals
from rgals.kernels import cpu
from rgals.metrics import ranking_metrics
from rgals.scoring import score_pass
from rgals.solve import RowSystems, solve_rows
from bench.common import script


def extended_rows(matrix, extra_ids, extra_gram, linear_row):
    """Per row r: its stored pairs (left to the caller's weights), the extra pairs
    extra_ids[r] with Gram weights extra_gram[r], and one pair to column `linear_row + r`
    (the row's own linear term). Returns (indptr, indices, which) with `which` = 0 for a
    stored pair, 1 extra, 2 linear, and the stored/extra positions in order."""
    rows = matrix.shape[0]
    counts = np.diff(matrix.indptr) + extra_ids.shape[1] + 1
    indptr = np.concatenate([[0], np.cumsum(counts)])
    stored_rows = np.repeat(np.arange(rows), np.diff(matrix.indptr))
    row_of = np.concatenate([stored_rows, np.repeat(np.arange(rows), extra_ids.shape[1]),
                             np.arange(rows)])
    columns = np.concatenate([matrix.indices, extra_ids.ravel(), linear_row + np.arange(rows)])
    kind = np.concatenate([np.zeros(matrix.nnz, np.int8), np.ones(extra_ids.size, np.int8),
                           np.full(rows, 2, np.int8)])
    order = np.argsort(row_of, kind="stable")
    return indptr, columns[order], kind[order], order, extra_gram.ravel()


def half_step(factors, others, matrix, extra_ids, extra_weight, linear, gram, scale, reg,
              alpha, cg_steps):
    """Solve A_r x = b_r for every row with
    A_r = scale_r gram + sum_stored alpha c y y^T + sum_extra extra_weight y y^T + reg_r I,
    b_r = sum_stored (alpha + 1/2) c y + linear_r."""
    indptr, indices, kind, order, extra = extended_rows(matrix, extra_ids, extra_weight,
                                                        others.shape[0])
    stored = matrix.data.astype(np.float64)
    pair_gram = np.concatenate([alpha * stored, extra, np.zeros(matrix.shape[0])])[order]
    pair_rhs = np.concatenate([(alpha + 0.5) * stored, np.zeros(extra.size),
                               np.ones(matrix.shape[0])])[order]
    shape = (matrix.shape[0], others.shape[0] + matrix.shape[0])
    pairs = sp.csr_matrix((np.ones(indices.size, np.float32), indices, indptr), shape=shape)
    extended = np.vstack([others, linear.astype(others.dtype)])
    systems = RowSystems(pairs, pair_gram, pair_rhs, extended, gram, np.zeros(gram.shape[0]),
                         scale=scale, reg=reg)
    solve_rows(systems, factors, solver="cg", cg_steps=cg_steps)


def item_softmax_sums(P, Q, weights, temperature, batch=1024):
    """Per user: LSE_u; per item: sum_u weights_u pi_uj p_u (one pass over all pairs)."""
    lse = np.empty(P.shape[0])
    sums = np.zeros((Q.shape[0], P.shape[1]))
    for start in range(0, P.shape[0], batch):
        scores = P[start:start + batch] @ Q.T
        scores *= scores.dtype.type(1.0 / temperature)  # the factors' dtype throughout
        top = scores.max(axis=1)
        scores -= top[:, None]
        np.exp(scores, out=scores)
        total = scores.sum(axis=1, dtype=np.float64)
        lse[start:start + batch] = top + np.log(total)
        scores *= (weights[start:start + batch] / total).astype(scores.dtype)[:, None]
        sums += scores.T @ P[start:start + batch]
    return lse, sums


def top_mass(P, Q, top_ids, lse, temperature, n_items):
    """pi of each user's top items, their scores, and the floor c_u (mean mass of the rest)."""
    scores = np.einsum("ud,utd->ut", P.astype(np.float64), Q[top_ids].astype(np.float64))
    mass = np.exp(scores / temperature - lse[:, None])
    floor = np.maximum(1.0 - mass.sum(axis=1), 0.0) / (n_items - top_ids.shape[1])
    return mass, scores, floor


def softmax_objective(P, Q, matrix, lse, n, temperature, alpha, user_reg, item_reg):
    observed = cpu.pair_scores(matrix.indptr, matrix.indices, P, Q).astype(np.float64)
    c = matrix.data.astype(np.float64)
    return float(temperature * n @ lse - c @ observed + alpha * c @ (observed - 1.0) ** 2
                 + user_reg @ (P.astype(np.float64) ** 2).sum(axis=1)
                 + item_reg * (Q.astype(np.float64) ** 2).sum())


def sweep(P, Q, matrix, transposed, n, args, temperature, user_reg, item_reg):
    """One re-expanded sweep in place; returns (softmax objective before it, seconds)."""
    start = time.perf_counter()
    M, N = matrix.shape
    T, alpha = args.top, args.alpha
    # user step at (P, Q)
    result = score_pass(P, Q, depth=T, temperature=temperature)
    objective = softmax_objective(P, Q, matrix, result.log_normaliser, n, temperature, alpha,
                                  user_reg, item_reg)
    mass, top_scores, floor = top_mass(P, Q, result.top_ids, result.log_normaliser,
                                       temperature, N)
    curvature = n / temperature  # the Hessian of n_u tau LSE(s / tau) is (n_u / tau) x ...
    extra = (curvature / 2)[:, None] * (mass - floor[:, None])
    floor = floor + args.damping / N  # Levenberg-Marquardt: damping x rg2's curvature 1/N
    gram = (Q.astype(np.float64).T @ Q.astype(np.float64))
    # b_u = (alpha + 1/2) sum c q - (n_u / 2) m_u + A_curv p0
    top_q = Q[result.top_ids].astype(np.float64)
    curv_p0 = (curvature / 2 * floor)[:, None] * (P.astype(np.float64) @ gram) + \
        np.einsum("ut,utd->ud", extra * top_scores, top_q)
    linear = -(n / 2)[:, None] * result.weighted_sum + curv_p0
    half_step(P, Q, matrix, result.top_ids, extra, linear, gram, curvature / 2 * floor,
              user_reg, alpha, args.cg_steps)
    # item step at (P new, Q)
    lse, item_sums = item_softmax_sums(P, Q, n, temperature)
    mass, top_scores, floor = top_mass(P, Q, result.top_ids, lse, temperature, N)
    extra = (curvature / 2)[:, None] * (mass - floor[:, None])  # per (u, top item)
    floor = floor + args.damping / N
    Pd = P.astype(np.float64)
    weighted_gram = (Pd * (curvature / 2 * floor)[:, None]).T @ Pd
    # the top pairs seen from the items: item j gets user u with weight extra[u, t]
    pairs = sp.csr_matrix((extra.ravel(), (np.repeat(np.arange(M), T), result.top_ids.ravel())),
                          shape=(M, N)).T.tocsr()
    pairs.sum_duplicates()
    Qd = Q.astype(np.float64)
    pair_scores = cpu.pair_scores(pairs.indptr, pairs.indices, Q, P).astype(np.float64)
    curv_q0 = Qd @ weighted_gram + cpu.weighted_row_sums(
        pairs.indptr, pairs.indices, pairs.data * pair_scores, Pd)
    linear = -0.5 * item_sums + curv_q0
    half_step_items(Q, P, transposed, pairs, linear, weighted_gram, item_reg, alpha,
                    args.cg_steps)
    return objective, time.perf_counter() - start


def half_step_items(Q, P, transposed, pairs, linear, gram, item_reg, alpha, cg_steps):
    """The item half step: stored pairs (alpha c, (alpha + 1/2) c), top pairs (their
    curvature, no rhs) and each item's linear term as a pair to column M + j."""
    N, M = transposed.shape
    stored_rows = np.repeat(np.arange(N), np.diff(transposed.indptr))
    extra_rows = np.repeat(np.arange(N), np.diff(pairs.indptr))
    row_of = np.concatenate([stored_rows, extra_rows, np.arange(N)])
    columns = np.concatenate([transposed.indices, pairs.indices, M + np.arange(N)])
    c = transposed.data.astype(np.float64)
    gram_w = np.concatenate([alpha * c, pairs.data, np.zeros(N)])
    rhs_w = np.concatenate([(alpha + 0.5) * c, np.zeros(pairs.nnz), np.ones(N)])
    order = np.argsort(row_of, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row_of, minlength=N))])
    matrix = sp.csr_matrix((np.ones(order.size, np.float32), columns[order], indptr),
                           shape=(N, M + N))
    systems = RowSystems(matrix, gram_w[order], rhs_w[order],
                         np.vstack([P, linear.astype(P.dtype)]), gram, np.zeros(gram.shape[0]),
                         scale=np.ones(N), reg=np.full(N, item_reg))
    solve_rows(systems, Q, solver="cg", cg_steps=cg_steps)


def validation_ndcg(P, Q, validation, fit_part):
    return ranking_metrics(P, Q, validation, fit_part, K=20)["ndcg@20"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(common.DATASETS), default="gowalla")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--regularization", type=float, default=0.001)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0])
    parser.add_argument("--warm", type=int, nargs="+", default=[2])
    parser.add_argument("--top", type=common.positive, default=50)
    parser.add_argument("--damping", type=float, default=0.0,
                        help="added to the curvature floor, in units of rg2's 1/N")
    parser.add_argument("--cg-steps", type=common.positive, default=3)
    common.probe_options(parser, sweeps=8)
    args = parser.parse_args(argv)
    numba.set_num_threads(args.threads)  # the probe's own kernel calls, outside a fit
    fit_part, validation = common.probe_data(args.dataset, args.seed)
    fit_part = fit_part.astype(np.float32).tocsr()
    transposed = fit_part.T.tocsr()
    n = np.asarray(fit_part.sum(axis=1)).ravel().astype(np.float64)
    M, N = fit_part.shape
    for temperature, warm in itertools.product(args.temperatures, args.warm):
        model = rgals.ALSSolver(factors=args.factors, loss="rg2", alpha=args.alpha,
                                regularization=args.regularization, iterations=max(warm, 1),
                                tol=0.0, random_state=args.seed, num_threads=args.threads)
        model.fit(fit_part, show_progress=False)
        P, Q = model.user_factors_.copy(), model.item_factors_.copy()
        loss = model.loss_
        user_reg = loss.user_reg(n)
        item_reg = loss.item_reg
        print(f"\n{args.dataset}: tau {temperature}, top {args.top}, damping {args.damping}, "
              f"warm {warm} rg2 sweeps "
              f"(validation N@20 {validation_ndcg(P, Q, validation, fit_part):.4f})",
              flush=True)
        for step in range(1, args.sweeps + 1):
            objective, seconds = sweep(P, Q, fit_part, transposed, n, args, temperature,
                                       user_reg, item_reg)
            print(f"  sweep {step}: softmax objective before {objective:.6e}, "
                  f"validation N@20 {validation_ndcg(P, Q, validation, fit_part):.4f}, "
                  f"{seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
