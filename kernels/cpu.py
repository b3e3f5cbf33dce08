"""Numba CPU kernels: the hot loops of an ALS half step, arrays in and arrays out.

Every kernel works on a batch of independent row systems (users or items)

    A_r = scale_r * gram + sum_k pair_gram_k y_k y_k^T + reg_r I
    b_r = scale_r * rhs + shift + sum_k pair_rhs_k y_k

where k runs over the nonzeros of row r of a CSR matrix (indptr, indices) and y_k is
the row `indices[k]` of `others`. Rows run in parallel. The exact solvers and the scores
sum in float64; the sparse products and CG run in the factors' dtype, so that a float32
model uses the full SIMD width (their callers pass every array in that dtype).
"""

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

# Pairs ahead whose rows the pair loops ask the CPU to fetch: a gathered row is an L2 or
# L3 miss, and without the hint the loop waits for each (measured on Gowalla: 16 ahead
# beats 8 and 32)
PREFETCH_AHEAD = 16


@intrinsic
def _prefetch_row(typingctx, matrix, row):
    """Ask the CPU to bring every 64-byte line of matrix[row] (2-D, C order) into cache;
    a hint that changes no value."""
    signature = types.void(matrix, row)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        i64, i32, byte_pointer = ir.IntType(64), ir.IntType(32), ir.IntType(8).as_pointer()
        strides = cgutils.unpack_tuple(builder, array.strides)
        shape = cgutils.unpack_tuple(builder, array.shape)
        index = args[1]
        if index.type.width < 64:
            index = builder.sext(index, i64)
        start = builder.add(builder.ptrtoint(array.data, i64), builder.mul(index, strides[0]))
        length = builder.mul(shape[1], strides[1])
        # llvm.prefetch(address, read, high locality, data cache)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
            "llvm.prefetch")
        with cgutils.for_range_slice(builder, ir.Constant(i64, 0), length,
                                     ir.Constant(i64, 64)) as (offset, _):
            address = builder.inttoptr(builder.add(start, offset), byte_pointer)
            builder.call(prefetch, [address, ir.Constant(i32, 0), ir.Constant(i32, 3),
                                    ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return signature, codegen


@njit(cache=True, fastmath=True)
def _dot_same(x, y):
    """x . y in the dtype of x and y: float32 models stay in float32 SIMD lanes."""
    total = x[0] * y[0]
    for i in range(1, x.shape[0]):
        total += x[i] * y[i]
    return total


@njit(cache=True, fastmath=True)
def _prefetch_pairs(others, indices, k, end):
    """Prefetch the rows of the four pairs PREFETCH_AHEAD after pair k (within the row)."""
    ahead = k + PREFETCH_AHEAD
    if ahead + 4 <= end:
        for j in range(4):
            _prefetch_row(others, indices[ahead + j])


@njit(cache=True, fastmath=True)
def _pairs_product(start, end, indices, weights, others, p, out):
    """out += sum_k weights_k (y_k . p) y_k over the pairs start..end, y_k = others[
    indices[k]]: four pairs at a time, so that their four dots run side by side instead
    of each axpy waiting for its dot (1.5x on Gowalla, with the prefetch). The gather and
    the dots are written out here and in `_pairs_first_pass`: a helper returning the four
    rows and dots made both passes 15-20% slower (measured)."""
    d = p.shape[0]
    k = start
    while k + 4 <= end:
        _prefetch_pairs(others, indices, k, end)
        y0, y1 = others[indices[k]], others[indices[k + 1]]
        y2, y3 = others[indices[k + 2]], others[indices[k + 3]]
        # zeros of p's dtype: `p[0] * 0` would be float64 and pull the pass out of float32
        d0 = d1 = d2 = d3 = p.dtype.type(0)
        for i in range(d):
            d0 += y0[i] * p[i]
            d1 += y1[i] * p[i]
            d2 += y2[i] * p[i]
            d3 += y3[i] * p[i]
        c0, c1 = weights[k] * d0, weights[k + 1] * d1
        c2, c3 = weights[k + 2] * d2, weights[k + 3] * d3
        for i in range(d):
            out[i] += c0 * y0[i] + c1 * y1[i] + c2 * y2[i] + c3 * y3[i]
        k += 4
    for rest in range(k, end):  # the last pairs, one at a time
        y = others[indices[rest]]
        coefficient = weights[rest] * _dot_same(y, p)
        for i in range(d):
            out[i] += coefficient * y[i]


@njit(cache=True, fastmath=True)
def _pairs_first_pass(start, end, indices, pair_gram, pair_rhs, others, x, b, Ax, jacobi):
    """The pairs' parts of CG's start, four pairs at a time as `_pairs_product`:
    b += sum_k pair_rhs_k y_k, Ax += sum_k pair_gram_k (y_k . x) y_k and the Jacobi
    diagonal jacobi += sum_k pair_gram_k y_k * y_k."""
    d = x.shape[0]
    k = start
    while k + 4 <= end:
        _prefetch_pairs(others, indices, k, end)
        y0, y1 = others[indices[k]], others[indices[k + 1]]
        y2, y3 = others[indices[k + 2]], others[indices[k + 3]]
        d0 = d1 = d2 = d3 = x.dtype.type(0)
        for i in range(d):
            d0 += y0[i] * x[i]
            d1 += y1[i] * x[i]
            d2 += y2[i] * x[i]
            d3 += y3[i] * x[i]
        a0, a1, a2, a3 = pair_gram[k], pair_gram[k + 1], pair_gram[k + 2], pair_gram[k + 3]
        e0, e1, e2, e3 = pair_rhs[k], pair_rhs[k + 1], pair_rhs[k + 2], pair_rhs[k + 3]
        c0, c1, c2, c3 = a0 * d0, a1 * d1, a2 * d2, a3 * d3
        for i in range(d):
            u0, u1, u2, u3 = y0[i], y1[i], y2[i], y3[i]
            b[i] += e0 * u0 + e1 * u1 + e2 * u2 + e3 * u3
            Ax[i] += c0 * u0 + c1 * u1 + c2 * u2 + c3 * u3
            jacobi[i] += a0 * u0 * u0 + a1 * u1 * u1 + a2 * u2 * u2 + a3 * u3 * u3
        k += 4
    for rest in range(k, end):  # the last pairs, one at a time
        y = others[indices[rest]]
        a, beta = pair_gram[rest], pair_rhs[rest]
        coefficient = a * _dot_same(y, x)
        for i in range(d):
            b[i] += beta * y[i]
            Ax[i] += coefficient * y[i]
            jacobi[i] += a * y[i] * y[i]


@njit(cache=True)
def _row_system(row, indptr, indices, pair_gram, pair_rhs, others, gram, rhs, shift,
                scale, reg):
    """Dense A_r and b_r of one row (only the lower triangle of A is filled)."""
    d = gram.shape[0]
    A = np.empty((d, d))
    b = np.empty(d)
    s = scale[row]
    for i in range(d):
        b[i] = s * rhs[i] + shift[i]
        for j in range(i + 1):
            A[i, j] = s * gram[i, j]
        A[i, i] += reg[row]
    for k in range(indptr[row], indptr[row + 1]):
        y = others[indices[k]]
        beta = pair_rhs[k]
        for i in range(d):
            b[i] += beta * y[i]
        a = pair_gram[k]
        if a != 0.0:
            for i in range(d):
                ai = a * y[i]
                for j in range(i + 1):
                    A[i, j] += ai * y[j]
    return A, b


@njit(cache=True)
def _cholesky_lower(A):
    """In-place Cholesky factor L (lower triangle) of a symmetric positive definite A.

    Returns False when a pivot is not positive (A not numerically positive definite).
    """
    d = A.shape[0]
    for j in range(d):
        pivot = A[j, j]
        for k in range(j):
            pivot -= A[j, k] * A[j, k]
        if not pivot > 0.0:
            return False
        pivot = np.sqrt(pivot)
        A[j, j] = pivot
        for i in range(j + 1, d):
            v = A[i, j]
            for k in range(j):
                v -= A[i, k] * A[j, k]
            A[i, j] = v / pivot
    return True


@njit(cache=True)
def _cholesky_solve(L, b):
    """Solve L L^T x = b given the lower factor L; returns x (b is left unchanged)."""
    d = L.shape[0]
    x = b.copy()
    for i in range(d):
        v = x[i]
        for k in range(i):
            v -= L[i, k] * x[k]
        x[i] = v / L[i, i]
    for i in range(d - 1, -1, -1):
        v = x[i]
        for k in range(i + 1, d):
            v -= L[k, i] * x[k]
        x[i] = v / L[i, i]
    return x


# Every row kernel below is a serial body over a range of rows, which releases the GIL,
# and a parallel driver that hands chunks of rows to Numba's threads. The public function
# runs the body on the calling thread when Numba has one thread there (a Dask task, a
# fit with num_threads=1): the same arithmetic row by row, while other Python threads run
# kernels of their own (measured: two threads calling a GIL-holding kernel took 0.18 s
# against 0.20 s one after the other, 0.12 s without the GIL), and without the threading
# layer, whose workqueue flavour refuses calls from two threads at once.
ROW_CHUNKS = 256


def _over_rows(body, driver, n_units, *arrays):
    """body(0, n_units, *arrays) on this thread when Numba has one here, else
    driver(n_units, *arrays) on Numba's threads."""
    if numba.get_num_threads() == 1:
        body(0, n_units, *arrays)
    else:
        driver(n_units, *arrays)


@njit(nogil=True, cache=True)
def _cholesky_range(first, stop, indptr, indices, pair_gram, pair_rhs, others, gram, rhs,
                    shift, scale, reg, factors, decrease):
    d = factors.shape[1]
    for row in range(first, stop):
        A, b = _row_system(row, indptr, indices, pair_gram, pair_rhs, others, gram, rhs,
                           shift, scale, reg)
        # dx^T A dx needs A itself; keep the lower triangle before factorising in place
        A_lower = A.copy()
        if not _cholesky_lower(A):
            decrease[row] = np.nan
            continue
        x = _cholesky_solve(A, b)
        dx = np.empty(d)
        for i in range(d):
            dx[i] = factors[row, i] - x[i]
            factors[row, i] = x[i]
        total = 0.0
        for i in range(d):
            total += A_lower[i, i] * dx[i] * dx[i]
            for j in range(i):
                total += 2.0 * A_lower[i, j] * dx[i] * dx[j]
        decrease[row] = total


@njit(parallel=True, cache=True)
def _cholesky_chunks(n_rows, indptr, indices, pair_gram, pair_rhs, others, gram, rhs, shift,
                     scale, reg, factors, decrease):
    n_chunks = min(n_rows, ROW_CHUNKS)
    for chunk in prange(n_chunks):
        _cholesky_range(chunk * n_rows // n_chunks, (chunk + 1) * n_rows // n_chunks,
                        indptr, indices, pair_gram, pair_rhs, others, gram, rhs, shift,
                        scale, reg, factors, decrease)


def cholesky_rows(indptr, indices, pair_gram, pair_rhs, others, gram, rhs, shift, scale,
                  reg, factors):
    """Exact solve of every row system; overwrites `factors` (also the warm start).

    Returns per row the decrease dx^T A dx of the quadratic x^T A x - 2 b^T x, or NaN
    for a row whose system is not positive definite.
    """
    n_rows = factors.shape[0]
    decrease = np.empty(n_rows)
    arrays = (indptr, indices, pair_gram, pair_rhs, others, gram, rhs, shift, scale, reg,
              factors, decrease)
    _over_rows(_cholesky_range, _cholesky_chunks, n_rows, *arrays)
    return decrease


@njit(nogil=True, cache=True)
def _inverse_sum_range(first, stop, n_chunks, indptr, indices, pair_gram, pair_rhs, others,
                       gram, rhs, shift, scale, reg, S_parts, t_parts, bad_parts):
    """The chunks first..stop of cholesky_inverse_sum, each into its own part."""
    n_rows = indptr.shape[0] - 1
    d = gram.shape[0]
    unit = np.zeros(d)
    for chunk in range(first, stop):
        for row in range(chunk * n_rows // n_chunks, (chunk + 1) * n_rows // n_chunks):
            A, b = _row_system(row, indptr, indices, pair_gram, pair_rhs, others, gram, rhs,
                               shift, scale, reg)
            if not _cholesky_lower(A):
                bad_parts[chunk] += 1
                continue
            t_parts[chunk] += _cholesky_solve(A, b)
            for j in range(d):
                unit[j] = 1.0
                S_parts[chunk, :, j] += _cholesky_solve(A, unit)
                unit[j] = 0.0


@njit(parallel=True, cache=True)
def _inverse_sum_chunks(n_chunks, indptr, indices, pair_gram, pair_rhs, others, gram, rhs,
                        shift, scale, reg, S_parts, t_parts, bad_parts):
    for chunk in prange(n_chunks):
        _inverse_sum_range(chunk, chunk + 1, n_chunks, indptr, indices, pair_gram, pair_rhs,
                           others, gram, rhs, shift, scale, reg, S_parts, t_parts,
                           bad_parts)


def cholesky_inverse_sum(indptr, indices, pair_gram, pair_rhs, others, gram, rhs, shift,
                         scale, reg, n_chunks):
    """S = sum_r A_r^{-1} and t = sum_r A_r^{-1} b_r over all rows.

    These give the d x d system of a coupled step (RGx items). Rows are split into
    `n_chunks` contiguous blocks, each summed on its own (one thread or many: the same
    sums), so that threads never share a buffer. Returns (S, t, number of rows whose A_r
    is not positive definite).
    """
    d = gram.shape[0]
    S_parts = np.zeros((n_chunks, d, d))
    t_parts = np.zeros((n_chunks, d))
    bad_parts = np.zeros(n_chunks, dtype=np.int64)
    arrays = (indptr, indices, pair_gram, pair_rhs, others, gram, rhs, shift, scale, reg,
              S_parts, t_parts, bad_parts)
    if numba.get_num_threads() == 1:  # as _over_rows, with the chunks as its units
        _inverse_sum_range(0, n_chunks, n_chunks, *arrays)
    else:
        _inverse_sum_chunks(n_chunks, *arrays)
    return S_parts.sum(axis=0), t_parts.sum(axis=0), int(bad_parts.sum())


@njit(nogil=True, cache=True, fastmath=True)
def _cg_range(first, stop, indptr, indices, pair_gram, pair_rhs, others_rotated, eigenvalues,
              rhs_rotated, shift_rotated, scale, reg, factors_rotated, max_steps, tolerance,
              decrease, curvature):
    # one workspace per range of rows: no allocation in the row loop
    work = np.empty((8, factors_rotated.shape[1]), dtype=factors_rotated.dtype)
    diagonal, preconditioner, x, b, r, z, p, Ap = (work[0], work[1], work[2], work[3],
                                                   work[4], work[5], work[6], work[7])
    for row in range(first, stop):
        decrease[row] = _cg_row(row, indptr, indices, pair_gram, pair_rhs, others_rotated,
                                eigenvalues, rhs_rotated, shift_rotated, scale, reg,
                                factors_rotated, max_steps, tolerance, diagonal,
                                preconditioner, x, b, r, z, p, Ap, curvature)


@njit(parallel=True, cache=True, fastmath=True)
def _cg_chunks(n_rows, indptr, indices, pair_gram, pair_rhs, others_rotated, eigenvalues,
               rhs_rotated, shift_rotated, scale, reg, factors_rotated, max_steps, tolerance,
               decrease, curvature):
    n_chunks = min(n_rows, ROW_CHUNKS)
    for chunk in prange(n_chunks):
        _cg_range(chunk * n_rows // n_chunks, (chunk + 1) * n_rows // n_chunks, indptr,
                  indices, pair_gram, pair_rhs, others_rotated, eigenvalues, rhs_rotated,
                  shift_rotated, scale, reg, factors_rotated, max_steps, tolerance,
                  decrease, curvature)


def cg_rows(indptr, indices, pair_gram, pair_rhs, others_rotated, eigenvalues, rhs_rotated,
            shift_rotated, scale, reg, factors_rotated, max_steps, tolerance):
    """Preconditioned conjugate gradient for every row, in the eigenbasis of `gram`.

    With gram = V diag(e) V^T and everything rotated by V (others V, factors V, V^T rhs),
    A_r = diag(scale_r e + reg_r) + sum_k pair_gram_k y_k y_k^T, so a product A_r x costs
    O(nnz_r d) instead of O(d^2). Jacobi preconditioner, warm start from
    `factors_rotated`, which is overwritten. Stops after `max_steps` or once
    |r| <= tolerance |b|. Returns per row (the decrease of x^T A x - 2 b^T x, which for
    PCG is the sum over steps of step_size * (r . z); the pair curvature
    sum_k pair_gram_k |y_k|^2, the trace of the pair terms, which the first pass has for
    free and the monitor's Hessian bound needs).
    """
    n_rows = factors_rotated.shape[0]
    decrease = np.zeros(n_rows)
    curvature = np.zeros(n_rows)
    arrays = (indptr, indices, pair_gram, pair_rhs, others_rotated, eigenvalues, rhs_rotated,
              shift_rotated, scale, reg, factors_rotated, max_steps, tolerance, decrease,
              curvature)
    _over_rows(_cg_range, _cg_chunks, n_rows, *arrays)
    return decrease, curvature


@njit(cache=True, fastmath=True)
def _cg_row(row, indptr, indices, pair_gram, pair_rhs, others_rotated, eigenvalues,
            rhs_rotated, shift_rotated, scale, reg, factors_rotated, max_steps, tolerance,
            diagonal, preconditioner, x, b, r, z, p, Ap, curvature):
    """PCG on one row (see cg_rows) in the given workspace vectors; returns its decrease
    and writes its pair curvature into curvature[row]."""
    d = x.shape[0]
    start, end = indptr[row], indptr[row + 1]
    for i in range(d):
        diagonal[i] = scale[row] * eigenvalues[i] + reg[row]
        preconditioner[i] = diagonal[i]
        x[i] = factors_rotated[row, i]
        b[i] = scale[row] * rhs_rotated[i] + shift_rotated[i]
        r[i] = diagonal[i] * x[i]  # A x for now
    # one pass over the row's pairs builds b, A x and the Jacobi diagonal together
    _pairs_first_pass(start, end, indices, pair_gram, pair_rhs, others_rotated, x, b, r,
                      preconditioner)
    trace = 0.0
    for i in range(d):
        r[i] = b[i] - r[i]
        z[i] = r[i] / preconditioner[i]
        p[i] = z[i]
        trace += preconditioner[i] - diagonal[i]
    curvature[row] = trace
    threshold = tolerance * tolerance * _dot_same(b, b)
    rz = _dot_same(r, z)
    total = 0.0
    for _ in range(max_steps):
        if rz <= 0.0 or _dot_same(r, r) <= threshold:
            break
        for i in range(d):
            Ap[i] = diagonal[i] * p[i]
        _pairs_product(start, end, indices, pair_gram, others_rotated, p, Ap)
        pAp = _dot_same(p, Ap)
        if not pAp > 0.0:
            break
        step = rz / pAp
        total += step * rz
        for i in range(d):
            x[i] += step * p[i]
            r[i] -= step * Ap[i]
            z[i] = r[i] / preconditioner[i]
        rz_next = _dot_same(r, z)
        ratio = rz_next / rz
        for i in range(d):
            p[i] = z[i] + ratio * p[i]
        rz = rz_next
    for i in range(d):
        factors_rotated[row, i] = x[i]
    return total


@njit(nogil=True, cache=True)
def _scores_range(first, stop, indptr, indices, row_factors, column_factors, scores):
    for row in range(first, stop):
        x = row_factors[row]
        for k in range(indptr[row], indptr[row + 1]):
            scores[k] = _dot_same(x, column_factors[indices[k]])


@njit(parallel=True, cache=True)
def _scores_chunks(n_rows, indptr, indices, row_factors, column_factors, scores):
    n_chunks = min(n_rows, ROW_CHUNKS)
    for chunk in prange(n_chunks):
        _scores_range(chunk * n_rows // n_chunks, (chunk + 1) * n_rows // n_chunks, indptr,
                      indices, row_factors, column_factors, scores)


def pair_rows(indptr, n_pairs):
    """The row of every stored pair of a CSR structure (`n_pairs`: indptr[-1], unused
    here; the batched kernels' version takes it from the host)."""
    return np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr))


def pair_scores(indptr, indices, row_factors, column_factors):
    """Scores row_factors[r] . column_factors[c] of every stored pair (r, c).

    Summed in the factors' dtype (a float32 model's scores carry float32 rounding, about
    1e-7 relative, far below what the monitor's identity check tolerates) and returned
    in float64 for the objective's sums.
    """
    n_rows = indptr.shape[0] - 1
    scores = np.empty(indices.shape[0])
    arrays = (indptr, indices, row_factors, column_factors, scores)
    _over_rows(_scores_range, _scores_chunks, n_rows, *arrays)
    return scores


@njit(nogil=True, cache=True, fastmath=True)
def _row_sums_range(first, stop, indptr, indices, weights, others, out):
    d = others.shape[1]
    for row in range(first, stop):
        total = out[row]
        for k in range(indptr[row], indptr[row + 1]):
            weight = weights[k]
            y = others[indices[k]]
            for i in range(d):
                total[i] += weight * y[i]


@njit(parallel=True, cache=True, fastmath=True)
def _row_sums_chunks(n_rows, indptr, indices, weights, others, out):
    n_chunks = min(n_rows, ROW_CHUNKS)
    for chunk in prange(n_chunks):
        _row_sums_range(chunk * n_rows // n_chunks, (chunk + 1) * n_rows // n_chunks, indptr,
                        indices, weights, others, out)


def weighted_row_sums(indptr, indices, weights, others):
    """out[r] = sum_k weights[k] others[indices[k]] over the nonzeros k of row r.

    The sparse-times-dense product of a CSR matrix whose values are `weights`, in the
    dtype of `others` (a float32 model sums in float32 here: one rounding per pair).
    """
    n_rows = indptr.shape[0] - 1
    out = np.zeros((n_rows, others.shape[1]), dtype=others.dtype)
    arrays = (indptr, indices, weights, others, out)
    _over_rows(_row_sums_range, _row_sums_chunks, n_rows, *arrays)
    return out


@njit(nogil=True, cache=True, fastmath=True)
def _diagonal_range(first, stop, pair_rotated, rhs_rotated, shift_rotated, old_rotated,
                    eigenvalues, scale, reg, decrease):
    d = pair_rotated.shape[1]
    for row in range(first, stop):
        total = 0.0
        for i in range(d):
            diagonal = scale[row] * eigenvalues[i] + reg[row]
            x = (pair_rotated[row, i] + scale[row] * rhs_rotated[i] + shift_rotated[i]) / diagonal
            change = old_rotated[row, i] - x
            total += diagonal * change * change
            pair_rotated[row, i] = x
        decrease[row] = total


@njit(parallel=True, cache=True, fastmath=True)
def _diagonal_chunks(n_rows, pair_rotated, rhs_rotated, shift_rotated, old_rotated,
                     eigenvalues, scale, reg, decrease):
    n_chunks = min(n_rows, ROW_CHUNKS)
    for chunk in prange(n_chunks):
        _diagonal_range(chunk * n_rows // n_chunks, (chunk + 1) * n_rows // n_chunks,
                        pair_rotated, rhs_rotated, shift_rotated, old_rotated, eigenvalues,
                        scale, reg, decrease)


def diagonal_solve(pair_rotated, rhs_rotated, shift_rotated, old_rotated, eigenvalues, scale,
                   reg):
    """Rows solved in a shared eigenbasis, where A_r = diag(scale_r e + reg_r).

    b_r = pair_rotated[r] + scale_r rhs_rotated + shift_rotated. `pair_rotated` is
    overwritten with the solutions; returns per row the decrease dx^T A_r dx, with
    dx = old - x.
    """
    n_rows = pair_rotated.shape[0]
    decrease = np.empty(n_rows)
    arrays = (pair_rotated, rhs_rotated, shift_rotated, old_rotated, eigenvalues, scale, reg,
              decrease)
    _over_rows(_diagonal_range, _diagonal_chunks, n_rows, *arrays)
    return decrease


@njit(nogil=True, cache=True)
def merge_top(scores, offset, tile_ids, mask_next, mask_end, mask_positions, best, ids):
    """Merge a tile of scores (rows x the targets at positions offset..offset+columns of
    the order the caller ranks in; `tile_ids` their ids) into the top lists.

    best[r], ids[r]: row r's best scores and ids so far, best first (empty slots: -inf
    and id -1). Row r's masked positions, mask_positions[mask_next[r]:mask_end[r]]
    (sorted), are set to -inf in the tile first, and mask_next[r] moves past them. -inf
    and NaN scores are never ranked. Equal scores rank the lower id first, in whatever
    order the tiles come. Most scores fail the single comparison with the list's last
    entry, far cheaper than an argpartition of each row.
    """
    n_rows, n_columns = scores.shape
    depth = ids.shape[1]
    stop = offset + n_columns
    for row in range(n_rows):
        values = scores[row]
        p, end = mask_next[row], mask_end[row]
        while p < end and mask_positions[p] < stop:
            values[mask_positions[p] - offset] = -np.inf
            p += 1
        mask_next[row] = p
        top, found = best[row], ids[row]
        threshold = top[depth - 1]
        for column in range(n_columns):
            value = values[column]
            if value > threshold or (value == threshold and value > -np.inf and
                                     tile_ids[column] < found[depth - 1]):
                item = tile_ids[column]
                slot = depth - 1
                while slot > 0 and (top[slot - 1] < value or
                                    (top[slot - 1] == value and found[slot - 1] > item)):
                    top[slot] = top[slot - 1]
                    found[slot] = found[slot - 1]
                    slot -= 1
                top[slot] = value
                found[slot] = item
                threshold = top[depth - 1]
