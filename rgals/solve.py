"""One ALS half step: the row systems a loss builds, and the solvers that minimise them."""

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import scipy.linalg

from .backend import array_module, backend_of
from .kernels.batched import linalg_errors

SOLVERS = ("auto", "cholesky", "cg")


class Solution(NamedTuple):
    """What a half step's solve reports: the objective's decrease, the eigenvalues of the
    blocks' shared Gram (None where the solver needed none) and, from CG, each block's
    per-row pair curvature sum_k pair_gram_k |y_k|^2 (None otherwise); the two let
    `row_bounds` skip work the solver already did. With `share_basis`, `rotation` is the
    d x d orthogonal V by which both sides were rotated (None when nothing was)."""

    decrease: float
    eigenvalues: Optional[object] = None
    pair_curvatures: Optional[list] = None
    rotation: Optional[object] = None  # V of a solve that left both sides rotated


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

    The fields in the symbols of design.md 1.3 (user step; the item step in brackets):
    """

    interactions: "scipy.sparse.csr_matrix"  # R's rows (R^T's), values c; or cupyx CSR
    pair_gram: Optional[np.ndarray]  # per pair: alpha c_ui (iALS: |alpha c| - 1)
    pair_rhs: np.ndarray  # per pair: (alpha + 1/2) c_ui (iALS: alpha c clipped at 0)
    others: np.ndarray  # the fixed side: Q (P)
    gram: np.ndarray  # G = Q^T Q, centred for RGx (G_W = sum_u w_u p_u p_u^T)
    rhs: np.ndarray  # -sigma = -sum_j q_j (-sigma_W = -sum_u w_u p_u)
    scale: np.ndarray  # per row: w_u = n_u / (2N) (1 for every item)
    reg: np.ndarray  # per row: lambda_u (lambda_i)
    coupling: Optional[np.ndarray] = None  # RGx items: C = G_W / N, so C sigma_Q


def resolve_solver(solver, pairs_in_gram):
    """The method `solver` stands for: 'eigen', 'cholesky' or 'cg'. `pairs_in_gram`:
    whether stored pairs carry a Gram weight (Loss.pairs_in_gram; for RowSystems,
    `pair_gram is not None`).

    'auto' takes the exact shared-eigenbasis path whenever no pair carries a Gram weight
    (alpha = 0 for RG2/RGx, unit confidences for iALS), and warm-started CG otherwise.
    """
    if solver == "auto":
        return "cg" if pairs_in_gram else "eigen"
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; use one of {SOLVERS}")
    return solver


def solve_rows(systems, factors, solver="auto", cg_steps=3, backend=None, cg_tolerance=None):
    """Run one half step in place on `factors` (rows x d); return the objective's decrease.

    The decrease is computed from the systems alone (sum of dx^T A dx for exact solves,
    its conjugate-gradient counterpart otherwise, plus the coupling term), so comparing
    it with the objective before and after checks that A and b match the loss.
    """
    return solve_blocks([systems], [factors], solver, cg_steps, backend,
                        cg_tolerance=cg_tolerance).decrease


def solve_blocks(systems, factors, solver="auto", cg_steps=3, backend=None,
                 share_basis=False, cg_tolerance=None):
    """One half step over row blocks: `systems[k]` are the RowSystems of the rows
    `factors[k]` (updated in place). Returns a `Solution`.

    The blocks share one Gram (and one coupling); each block is solved on its own, and
    the coupled step (RGx items) first sums each block's `coupling_part`: several blocks
    give one block's factors up to summation order. The Dask mode runs the same steps
    (`shared_basis`, `coupling_part`, `coupling_shift`, `solve_block`, `coupling_change`)
    block by block on its workers.

    share_basis: the eigenbasis solvers ("eigen", "cg") rotate the fixed side (the
    systems' `others`, in place) and leave the solved rows in the Gram's eigenbasis V
    instead of rotating them back: two n x d x d products a half step instead of three.
    Scores, Grams' spectra and the objective are the same in any basis both sides share;
    the caller keeps the accumulated rotation (`Solution.rotation`) and undoes it once.

    cg_tolerance: CG on a row stops once |b - A x| <= cg_tolerance |b| (None: at the
    rounding of the factors' dtype, 1e-6 for float32 and 1e-12 for float64).
    """
    backend = backend or backend_of(factors[0])
    first = systems[0]
    for part in systems:
        check_finite_systems(part)
    method, eigen = shared_basis(first, solver)
    # the fixed side in the eigenbasis, once for every block
    others_rotated = (first.others @ eigen[1].astype(first.others.dtype)
                      if share_basis and eigen is not None else None)
    basis = ([_EigenBasis(part, factors[0].dtype, backend, eigen, others_rotated)
              for part in systems] if method == "eigen" else [None] * len(systems))
    coupling = first.coupling
    shift = backend.xp.zeros(factors[0].shape[1])
    if coupling is not None:
        before = add_statistics(coupling_part(part, block, method, backend, eigen, prepared)
                           for part, block, prepared in zip(systems, factors, basis))
        shift = coupling_shift(coupling, method, before)

    decrease, curvatures = 0.0, []
    for part, block, prepared in zip(systems, factors, basis):
        block_decrease, curvature = solve_block(part, block, method, eigen, shift, cg_steps,
                                                backend, others_rotated, cg_tolerance,
                                                prepared)
        decrease += block_decrease
        if curvature is not None:
            curvatures.append(curvature)

    if coupling is not None:
        sigma_after = sum(block.sum(axis=0, dtype=np.float64) for block in factors)
        if others_rotated is not None:  # back to the basis C and sigma_before are in
            sigma_after = eigen[1] @ sigma_after
        decrease += coupling_change(coupling, method, before["sigma"], sigma_after)
    rotation = None
    if others_rotated is not None:
        first.others[...] = others_rotated
        rotation = eigen[1]
    return Solution(decrease, None if eigen is None else eigen[0], curvatures or None,
                    rotation)


def shared_basis(systems, solver):
    """(the method `solver` stands for, the eigenbasis of the blocks' shared Gram or None):
    one eigendecomposition serves every block (the same on every worker)."""
    return basis_of(systems.gram, resolve_solver(solver, systems.pair_gram is not None))


def basis_of(gram, method):
    """(method, the eigenbasis of `gram` when `method` solves in it, else None)."""
    return method, (_eigenbasis(gram) if method in ("eigen", "cg") else None)


def add_statistics(parts):
    """Dicts of arrays from several row blocks, summed: the side statistics of a half
    step (its reduction) or the blocks' `coupling_part`s."""
    parts = list(parts)
    return {name: sum(part[name] for part in parts) for name in parts[0]}


def coupling_part(systems, factors, method, backend, eigen=None, basis=None):
    """What a coupled step (RGx items) needs of one block before any block is solved:
    sigma = sum_r x_r, and for the exact methods sum_r A_r^-1 and sum_r A_r^-1 b_r."""
    part = {"sigma": factors.sum(axis=0, dtype=np.float64)}
    if method != "cg":
        if method == "eigen":
            basis = basis or _EigenBasis(systems, factors.dtype, backend, eigen)
            inverse_sum, solution_sum = basis.inverse_sum()
        else:
            inverse_sum, solution_sum = _cholesky_inverse_sum(systems, backend)
        part.update(inverse_sum=inverse_sum, solution_sum=solution_sum)
    return part


def coupling_shift(coupling, method, parts):
    """C sigma, the shift of every b_r, from the blocks' summed `coupling_part`s."""
    if method == "cg":
        # CG takes a block-descent step instead of the coupled solve: sigma_Q held at its
        # current value makes the rows independent, A_i q_i = b_i + C sigma (a shift of
        # b). That is the coupling term -sigma^T C sigma linearised at sigma_before, an
        # upper bound of it (C is PSD: majorise-minimise), so F falls by at least the
        # rows' decrease; the rest is `coupling_change`
        return coupling @ parts["sigma"]
    # the coupled minimiser: (I - S C) sigma = t, S = sum A^-1, t = sum A^-1 b
    xp = array_module(coupling)
    eye = xp.eye(coupling.shape[0])
    with linalg_errors(xp):
        return coupling @ xp.linalg.solve(eye - parts["inverse_sum"] @ coupling,
                                          parts["solution_sum"])


def coupling_change(coupling, method, sigma_before, sigma_after):
    """The coupling term's part of the decrease, with delta = sigma_after - sigma_before:
    exact step, the Hessian's quadratic form (-delta^T C delta); block descent, the gain
    from updating sigma (+delta^T C delta)."""
    delta = sigma_after - sigma_before
    change = float(delta @ coupling @ delta)
    return change if method == "cg" else -change


def solve_block(systems, factors, method, eigen, shift, cg_steps=3, backend=None,
                others_rotated=None, cg_tolerance=None, basis=None):
    """Solve one block's rows in place (b shifted by `shift`); returns (decrease, the
    per-row pair curvature from CG or None). `basis`: its _EigenBasis, when built."""
    backend = backend or backend_of(factors)
    if method == "eigen":
        basis = basis or _EigenBasis(systems, factors.dtype, backend, eigen, others_rotated)
        return basis.solve(factors, shift), None
    if method == "cholesky":
        return _solve_cholesky(systems, factors, shift, backend), None
    return _solve_cg(systems, factors, shift, cg_steps, backend, eigen, others_rotated,
                     cg_tolerance)


def row_bounds(systems, backend=None, eigenvalues=None, pair_curvature=None):
    """Bounds (lowest, highest) on the eigenvalues of every A_r of these systems.

    With gram eigenvalues e_min, e_max: scale_r e_min + reg_r <= eig(A_r) <=
    scale_r e_max + reg_r when no pair carries a Gram weight (exact); pair terms
    a_k y_k y_k^T widen the interval by the negative and the positive parts of
    sum_k a_k |y_k|^2. The coupling, which ties rows together, is the loss's to bound
    (Loss.hessian_bounds). `eigenvalues` (the Gram's) and `pair_curvature` (per row,
    sum_k pair_gram_k |y_k|^2): what the solver computed already, when it did.
    """
    backend = backend or backend_of(systems.others)
    xp = backend.xp
    if eigenvalues is None:
        eigenvalues = _eigenbasis(systems.gram, values_only=True)
    matrix = systems.interactions
    scale, reg = systems.scale, systems.reg
    lowest = scale * float(eigenvalues[0]) + reg
    highest = scale * float(eigenvalues[-1]) + reg
    pair_gram = systems.pair_gram
    if pair_gram is not None and pair_gram.shape[0]:
        def pair_sums(weights):
            # |y_k|^2 in the factors' dtype (4x faster than float64 for float32; a bound's
            # relative rounding of 1e-7 is far below what the rate bound resolves)
            others = systems.others
            norms = xp.einsum("ij,ij->i", others, others).astype(np.float64)[:, None]
            return backend.kernels.weighted_row_sums(matrix.indptr, matrix.indices, weights,
                                                     norms)[:, 0]

        # RG2's pair weights are never negative: one pass (or none, after CG), no copies
        if float(pair_gram.min()) >= 0.0:
            highest += pair_sums(pair_gram) if pair_curvature is None else pair_curvature
        else:
            lowest += pair_sums(xp.minimum(pair_gram, 0.0))
            highest += pair_sums(xp.maximum(pair_gram, 0.0))
    if lowest.shape[0] == 0:
        return math.inf, -math.inf
    return float(lowest.min()), float(highest.max())


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
        with linalg_errors(xp):
            result = xp.linalg.eigvalsh(gram) if values_only else xp.linalg.eigh(gram)
    if values_only:
        return xp.maximum(result, 0.0)
    eigenvalues, eigenvectors = result
    # grams are positive semidefinite by construction; drop rounding below zero
    return xp.maximum(eigenvalues, 0.0), eigenvectors


class _EigenBasis:
    """Systems without pair Gram terms, A_r = V diag(scale_r e + reg_r) V^T: O(d^2) a row."""

    def __init__(self, systems, dtype, backend, eigen, others_rotated=None):
        """others_rotated: the fixed side already in the eigenbasis (share_basis); the
        solutions then stay in it too."""
        if systems.pair_gram is not None:
            raise ValueError("the shared-eigenbasis path needs systems without pair Gram "
                             "terms (solver='cholesky' or 'cg' handles those)")
        self.systems = systems
        self.eigenvalues, self.eigenvectors = eigen
        self.vectors = self.eigenvectors.astype(dtype)  # for products with the factors
        matrix = systems.interactions
        self.kernels = backend.kernels
        self.stay_rotated = others_rotated is not None
        others = others_rotated if self.stay_rotated else systems.others
        pair_sums = self.kernels.weighted_row_sums(
            matrix.indptr, matrix.indices, systems.pair_rhs.astype(others.dtype), others)
        self.pair_rotated = pair_sums if self.stay_rotated else pair_sums @ self.vectors
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
        decrease = self.kernels.diagonal_solve(
            solution, self.rhs_rotated, self.eigenvectors.T @ shift, old_rotated,
            self.eigenvalues, self.systems.scale, self.systems.reg)
        factors[:] = solution if self.stay_rotated else solution @ self.vectors.T
        return float(decrease.sum())


def _solve_cholesky(systems, factors, shift, backend):
    decrease = backend.kernels.cholesky_rows(*_kernel_arrays(systems), systems.others,
                                             systems.gram, systems.rhs, shift, systems.scale,
                                             systems.reg, factors)
    _check_positive_definite(int((~backend.xp.isfinite(decrease)).sum()))
    return float(decrease.sum())


def _solve_cg(systems, factors, shift, cg_steps, backend, eigen, others_rotated=None,
              tolerance=None):
    """CG in the eigenbasis; with `others_rotated` given (share_basis) the solved rows
    stay in it."""
    eigenvalues, eigenvectors = eigen
    vectors = eigenvectors.astype(factors.dtype)  # products with the factors in their dtype
    stay_rotated = others_rotated is not None
    if not stay_rotated:
        others_rotated = systems.others @ vectors
    factors_rotated = factors @ vectors
    rounding = 1e-12 if factors.dtype == np.float64 else 1e-6
    tolerance = rounding if tolerance is None else max(tolerance, rounding)
    dtype = factors.dtype  # CG runs in the factors' dtype (SIMD width)
    decrease, curvature = backend.kernels.cg_rows(
        *_kernel_arrays(systems, dtype), others_rotated, eigenvalues.astype(dtype),
        (eigenvectors.T @ systems.rhs).astype(dtype), (eigenvectors.T @ shift).astype(dtype),
        systems.scale.astype(dtype), systems.reg.astype(dtype), factors_rotated, cg_steps,
        tolerance)
    factors[:] = factors_rotated if stay_rotated else factors_rotated @ vectors.T
    return float(decrease.sum()), curvature


def _cholesky_inverse_sum(systems, backend):
    """sum_r A_r^{-1} and sum_r A_r^{-1} b_r by Cholesky, for the exact coupled step."""
    xp = backend.xp
    n_chunks = max(1, min(64, systems.interactions.shape[0]))
    inverse_sum, solution_sum, n_bad = backend.kernels.cholesky_inverse_sum(
        *_kernel_arrays(systems), systems.others, systems.gram, systems.rhs,
        xp.zeros(systems.gram.shape[0]), systems.scale, systems.reg, n_chunks)
    _check_positive_definite(n_bad)
    return inverse_sum, solution_sum


def check_finite_systems(systems):
    for name in ("pair_gram", "pair_rhs", "gram", "rhs", "scale", "reg"):
        values = getattr(systems, name)
        # a sum is NaN or infinite when any value is (or overflows): no boolean copies
        if values is not None and not math.isfinite(float(values.sum())):
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
