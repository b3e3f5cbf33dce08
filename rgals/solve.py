"""One ALS half step: the row systems a loss builds, and the solvers that minimise them."""

from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.linalg

from .backend import array_module, kernels_for

SOLVERS = ("auto", "cholesky", "cg")


@dataclass
class RowSystems:
    """The normal equations of one half step, one system per row r of `interactions`:

        A_r = scale_r * gram + sum_k pair_gram_k y_k y_k^T + reg_r I
        b_r = scale_r * rhs + sum_k pair_rhs_k y_k

    where k runs over the nonzeros of row r and y_k is the row of `others` in column k.
    Minimising x^T A_r x - 2 b_r^T x for every row is the half step. `pair_gram` is None
    when every pair weight is zero: then all systems share one eigenbasis (fast path).

    All arrays live in one array library (NumPy, or CuPy for backend="gpu"); the solvers
    run the kernels of that library.

    `coupling` C, when set, adds -sigma^T C sigma with sigma = sum_r x_r to the objective
    (RGx's interactive term on the item side); the minimiser then solves
    A_r x_r = b_r + C sigma for every r.
    """

    interactions: "scipy.sparse.csr_matrix"  # or cupyx.scipy.sparse on the GPU
    pair_gram: Optional[np.ndarray]
    pair_rhs: np.ndarray
    others: np.ndarray
    gram: np.ndarray
    rhs: np.ndarray
    scale: np.ndarray
    reg: np.ndarray
    coupling: Optional[np.ndarray] = None


def resolve_solver(solver, systems):
    """The method `solver` stands for on these systems: 'eigen', 'cholesky' or 'cg'.

    'auto' takes the exact shared-eigenbasis path whenever no pair carries a Gram weight
    (alpha = 0 for RG2/RGx, unit confidences for iALS), and warm-started CG otherwise.
    """
    if solver == "auto":
        return "eigen" if systems.pair_gram is None else "cg"
    return solver


def solve_rows(systems, factors, solver="auto", cg_steps=3):
    """Run one half step in place on `factors` (rows x d); return the objective's decrease.

    The decrease is computed from the systems alone (sum of dx^T A dx for exact solves,
    its conjugate-gradient counterpart otherwise, plus the coupling term), so comparing
    it with the objective before and after checks that A and b match the loss.
    """
    method = resolve_solver(solver, systems)
    if method not in ("eigen", "cholesky", "cg"):
        raise ValueError(f"unknown solver {solver!r}; use one of {SOLVERS}")
    _check_finite_systems(systems)
    xp = array_module(factors)
    d = factors.shape[1]
    shift = xp.zeros(d)
    coupling = systems.coupling
    basis = _EigenBasis(systems, factors.dtype) if method == "eigen" else None
    if coupling is not None:
        sigma_before = factors.sum(axis=0, dtype=np.float64)
        if method == "cg":
            # block descent on the coupling: hold sigma at its current value
            shift = coupling @ sigma_before
        else:
            inverse_sum, solution_sum = (basis.inverse_sum() if basis is not None
                                         else _cholesky_inverse_sum(systems))
            sigma = xp.linalg.solve(xp.eye(d) - inverse_sum @ coupling, solution_sum)
            shift = coupling @ sigma

    if method == "eigen":
        decrease = basis.solve(factors, shift)
    elif method == "cholesky":
        decrease = _solve_cholesky(systems, factors, shift)
    else:
        decrease = _solve_cg(systems, factors, shift, cg_steps)

    if coupling is not None:
        delta = factors.sum(axis=0, dtype=np.float64) - sigma_before
        coupling_change = float(delta @ coupling @ delta)
        # exact step: Hessian quadratic form; block descent: gain from updating sigma
        decrease += coupling_change if method == "cg" else -coupling_change
    return decrease


def hessian_bounds(systems):
    """Bounds (lowest, highest) on the eigenvalues of the half step's Hessian.

    The objective is x^T A_r x - 2 b_r^T x summed over rows, so the Hessian is 2 A_r
    block by block (minus 2 (1 1^T) kron C with a coupling C). With gram eigenvalues
    e_min, e_max: scale_r e_min + reg_r <= eig(A_r) <= scale_r e_max + reg_r when no pair
    carries a Gram weight (exact); pair terms a_k y_k y_k^T widen the interval by the
    negative and the positive parts of sum_k a_k |y_k|^2. For RGx's centred coupling
    (C = gram / rows, unit scale) the gram part is (I - 1 1^T / rows) kron gram, whose
    lowest eigenvalue is 0, so the bound is reg (exact without pair terms); any other
    coupling lowers the bound by rows * eig_max(C) (Weyl).
    """
    xp = array_module(systems.scale)
    eigenvalues = _eigenbasis(systems.gram, values_only=True)
    matrix = systems.interactions
    scale, reg = systems.scale, systems.reg
    lowest = scale * float(eigenvalues[0]) + reg
    highest = scale * float(eigenvalues[-1]) + reg
    if systems.pair_gram is not None:
        others = systems.others.astype(np.float64)
        norms = (others * others).sum(axis=1, keepdims=True)
        kernels = kernels_for(xp)
        for part, bound in ((xp.minimum(systems.pair_gram, 0.0), lowest),
                            (xp.maximum(systems.pair_gram, 0.0), highest)):
            bound += kernels.weighted_row_sums(matrix.indptr, matrix.indices, part, norms)[:, 0]
    lowest = float(lowest.min())
    if systems.coupling is not None:
        rows = matrix.shape[0]
        if bool((scale == 1.0).all()) and bool(xp.allclose(systems.coupling * rows,
                                                              systems.gram)):
            lowest -= float(eigenvalues[0])
        else:
            lowest -= rows * max(float(_eigenbasis(systems.coupling, values_only=True)[-1]),
                                 0.0)
    return 2.0 * lowest, 2.0 * float(highest.max())


def _kernel_arrays(systems, dtype=np.float64):
    """The sparse structure and pair weights every kernel takes, weights in `dtype`.

    Kernels that compute in the factors' dtype get the weights in it: mixing float64
    weights with float32 factors keeps Numba from vectorising the loops.
    """
    matrix = systems.interactions
    pair_gram = systems.pair_gram
    if pair_gram is None:
        pair_gram = array_module(systems.pair_rhs).zeros(matrix.nnz)
    return (matrix.indptr, matrix.indices, pair_gram.astype(dtype, copy=False),
            systems.pair_rhs.astype(dtype, copy=False))


def _eigenbasis(gram, values_only=False):
    """Eigenvalues (clipped at zero) and eigenvectors of a d x d Gram, on its device."""
    xp = array_module(gram)
    if xp is np:
        result = scipy.linalg.eigh(gram, eigvals_only=values_only)
    else:
        result = xp.linalg.eigvalsh(gram) if values_only else xp.linalg.eigh(gram)
    if values_only:
        return xp.maximum(result, 0.0)
    eigenvalues, eigenvectors = result
    # grams are positive semidefinite by construction; drop rounding below zero
    return xp.maximum(eigenvalues, 0.0), eigenvectors


class _EigenBasis:
    """Systems without pair Gram terms, A_r = V diag(scale_r e + reg_r) V^T: O(d^2) a row."""

    def __init__(self, systems, dtype):
        if systems.pair_gram is not None:
            raise ValueError("the shared-eigenbasis path needs systems without pair Gram "
                             "terms (solver='cholesky' or 'cg' handles those)")
        self.systems = systems
        self.eigenvalues, self.eigenvectors = _eigenbasis(systems.gram)
        self.vectors = self.eigenvectors.astype(dtype)  # for products with the factors
        matrix = systems.interactions
        self.kernels = kernels_for(array_module(systems.others))
        pair_sums = self.kernels.weighted_row_sums(matrix.indptr, matrix.indices,
                                                   systems.pair_rhs.astype(systems.others.dtype),
                                                   systems.others)
        self.pair_rotated = pair_sums @ self.vectors
        self.rhs_rotated = self.eigenvectors.T @ systems.rhs

    def diagonals(self):
        return self.systems.scale[:, None] * self.eigenvalues + self.systems.reg[:, None]

    def inverse_sum(self):
        """sum_r A_r^{-1} and sum_r A_r^{-1} b_r."""
        diagonals = self.diagonals()
        rhs = self.pair_rotated + self.systems.scale[:, None] * self.rhs_rotated
        inverse_sum = (self.eigenvectors * (1.0 / diagonals).sum(axis=0)) @ self.eigenvectors.T
        return inverse_sum, self.eigenvectors @ (rhs / diagonals).sum(axis=0)

    def solve(self, factors, shift):
        old_rotated = factors @ self.vectors
        solution = self.pair_rotated  # overwritten in place by the kernel
        decrease = self.kernels.diagonal_solve(solution, self.rhs_rotated, self.eigenvectors.T @ shift,
                                      old_rotated, self.eigenvalues, self.systems.scale,
                                      self.systems.reg)
        factors[:] = solution @ self.vectors.T
        return float(decrease.sum())


def _solve_cholesky(systems, factors, shift):
    xp = array_module(factors)
    decrease = kernels_for(xp).cholesky_rows(*_kernel_arrays(systems), systems.others,
                                             systems.gram, systems.rhs, shift, systems.scale,
                                             systems.reg, factors)
    _check_positive_definite(int((~xp.isfinite(decrease)).sum()))
    return float(decrease.sum())


def _solve_cg(systems, factors, shift, cg_steps):
    eigenvalues, eigenvectors = _eigenbasis(systems.gram)
    vectors = eigenvectors.astype(factors.dtype)  # products with the factors in their dtype
    others_rotated = systems.others @ vectors
    factors_rotated = factors @ vectors
    tolerance = 1e-12 if factors.dtype == np.float64 else 1e-6
    dtype = factors.dtype  # CG runs in the factors' dtype (SIMD width)
    kernels = kernels_for(array_module(factors))
    decrease = kernels.cg_rows(*_kernel_arrays(systems, dtype), others_rotated,
                           eigenvalues.astype(dtype), (eigenvectors.T @ systems.rhs).astype(dtype),
                           (eigenvectors.T @ shift).astype(dtype), systems.scale.astype(dtype),
                           systems.reg.astype(dtype), factors_rotated, cg_steps, tolerance)
    factors[:] = factors_rotated @ vectors.T
    return float(decrease.sum())


def _cholesky_inverse_sum(systems):
    """sum_r A_r^{-1} and sum_r A_r^{-1} b_r by Cholesky, for the exact coupled step."""
    xp = array_module(systems.gram)
    n_chunks = max(1, min(64, systems.interactions.shape[0]))
    inverse_sum, solution_sum, n_bad = kernels_for(xp).cholesky_inverse_sum(
        *_kernel_arrays(systems), systems.others, systems.gram, systems.rhs,
        xp.zeros(systems.gram.shape[0]), systems.scale, systems.reg, n_chunks)
    _check_positive_definite(n_bad)
    return inverse_sum, solution_sum


def _check_finite_systems(systems):
    for name in ("pair_gram", "pair_rhs", "gram", "rhs", "scale", "reg"):
        values = getattr(systems, name)
        if values is not None and not bool(array_module(values).isfinite(values).all()):
            raise FloatingPointError(
                f"the fit diverged: the half step's {name} is not finite. Likely causes: "
                "confidence values or alpha too large (overflow), or factors that grew without "
                "bound because regularization is too small. Scale the values down, raise "
                "`regularization`, or use dtype=np.float64")


def _check_positive_definite(n_bad):
    if n_bad:
        raise FloatingPointError(
            f"{n_bad} row systems are not positive definite "
            "(non-finite factors or a regularization too small for this data); "
            "increase `regularization` or use dtype=np.float64")
