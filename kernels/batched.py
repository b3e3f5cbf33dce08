"""Array-library kernels for the GPU: every row of a half step at once, arrays in and out.

`BatchedKernels(xp)` has the methods and conventions of the Numba kernels of `cpu.py`
(see there for the row systems A_r, b_r), written with whole-array operations of the
module `xp`: CuPy on a CUDA device (cuBLAS products, cuSPARSE sparse-dense products), or
NumPy, which lets the CPU test suite check every kernel against the Numba ones. The exact
solvers factorise all rows of a block by one batched Cholesky call; a block holding a row
that is not positive definite is factorised again column by column, with the pivot test
of the Numba kernels, so both flag the same rows.
Per-pair work runs in chunks of `PAIR_BUDGET` elements and dense d x d systems in blocks
of `SYSTEM_BUDGET`, so memory stays bounded for any number of factors.
"""

from contextlib import nullcontext

import numpy as np

PAIR_BUDGET = 1 << 24  # elements of a per-pair temporary (pairs x d, or pairs x d x d)
SYSTEM_BUDGET = 1 << 24  # elements of a block of dense systems (rows x d x d)
GROUPS_PER_DEPTH = 4  # top lists: a row's entries in 4 x depth groups, for a threshold


def linalg_errors(xp):
    """A context in which `xp.linalg` raises LinAlgError on a failed factorisation, as
    NumPy does: CuPy's default (linalg='ignore') returns NaN or garbage instead."""
    if xp is np:
        return nullcontext()
    import cupyx
    errstate = getattr(cupyx, "errstate", None)  # CuPy's since v8 (the API stand-in lacks it)
    return nullcontext() if errstate is None else errstate(linalg="raise")


class BatchedKernels:
    """The kernels of `cpu.py` for arrays of `xp` (the numpy or the cupy module)."""

    def __init__(self, xp):
        self.xp = xp
        if xp is np:
            import scipy.sparse as sparse
        else:
            import cupyx.scipy.sparse as sparse
        self.sparse = sparse

    def _host_copy(self, array):
        """`array` as a NumPy array (block bounds are computed on the host)."""
        return array if self.xp is np else array.get()

    def _csr(self, values, indices, indptr, n_columns):
        return self.sparse.csr_matrix((values, indices, indptr),
                                      shape=(indptr.shape[0] - 1, n_columns))

    def pair_rows(self, indptr, n_pairs):
        """The row of every stored pair of a CSR structure (as cpu.pair_rows; no repeat with
        device counts, which CuPy takes only from 14.1)."""
        xp = self.xp
        return xp.searchsorted(indptr, xp.arange(n_pairs, dtype=indptr.dtype),
                               side="right") - 1

    def _pair_dots(self, rows, indices, row_vectors, column_vectors):
        """row_vectors[rows[k]] . column_vectors[indices[k]] for every pair k, in chunks."""
        n_pairs, d = indices.shape[0], row_vectors.shape[1]
        dots = self.xp.empty(n_pairs, dtype=np.result_type(row_vectors.dtype,
                                                           column_vectors.dtype))
        chunk = max(1, PAIR_BUDGET // d)
        for start in range(0, n_pairs, chunk):
            part = slice(start, start + chunk)
            dots[part] = (row_vectors[rows[part]] * column_vectors[indices[part]]).sum(axis=1)
        return dots

    def pair_scores(self, indptr, indices, row_factors, column_factors):
        """Scores row_factors[r] . column_factors[c] of every stored pair, in float64."""
        rows = self.pair_rows(indptr, indices.shape[0])
        return self._pair_dots(rows, indices, row_factors, column_factors).astype(np.float64)

    def weighted_row_sums(self, indptr, indices, weights, others):
        """out[r] = sum_k weights[k] others[indices[k]]: a sparse-dense product."""
        weights = weights.astype(others.dtype)
        return self._csr(weights, indices, indptr, others.shape[0]) @ others

    def diagonal_solve(self, pair_rotated, rhs_rotated, shift_rotated, old_rotated,
                       eigenvalues, scale, reg):
        """Rows solved where A_r = diag(scale_r e + reg_r) (see cpu.diagonal_solve): writes
        the solutions into `pair_rotated` and returns each row's decrease dx^T A_r dx."""
        diagonal = scale[:, None] * eigenvalues + reg[:, None]
        solution = (pair_rotated + scale[:, None] * rhs_rotated + shift_rotated) / diagonal
        change = old_rotated - solution
        pair_rotated[...] = solution
        return (diagonal * change * change).sum(axis=1)

    def cg_rows(self, indptr, indices, pair_gram, pair_rhs, others_rotated, eigenvalues,
                rhs_rotated, shift_rotated, scale, reg, factors_rotated, max_steps, tolerance):
        """Jacobi-preconditioned CG for all rows in lockstep, in the eigenbasis of the gram
        (see cpu.cg_rows): a row stops where the CPU kernel's row would, so both give the
        same iterates. Overwrites `factors_rotated`; returns each row's decrease and pair
        curvature sum_k pair_gram_k |y_k|^2."""
        xp = self.xp
        n_items = others_rotated.shape[0]
        rows = self.pair_rows(indptr, indices.shape[0])
        gram_matrix = self._csr(pair_gram, indices, indptr, n_items)

        def product(vectors):  # A_r v_r for every row
            coefficients = pair_gram * self._pair_dots(rows, indices, vectors, others_rotated)
            return (diagonal * vectors
                    + self._csr(coefficients, indices, indptr, n_items) @ others_rotated)

        diagonal = scale[:, None] * eigenvalues + reg[:, None]
        pair_diagonal = gram_matrix @ (others_rotated * others_rotated)
        preconditioner = diagonal + pair_diagonal
        b = (scale[:, None] * rhs_rotated + shift_rotated
             + self._csr(pair_rhs, indices, indptr, n_items) @ others_rotated)
        x = factors_rotated.copy()
        r = b - product(x)
        z = r / preconditioner
        p = z.copy()
        threshold = tolerance * tolerance * (b * b).sum(axis=1)
        rz = (r * z).sum(axis=1)
        total = xp.zeros(x.shape[0])
        active = (rz > 0) & ((r * r).sum(axis=1) > threshold)
        for _ in range(max_steps):
            if not bool(active.any()):
                break
            Ap = product(p)
            pAp = (p * Ap).sum(axis=1)
            active &= pAp > 0
            step = xp.where(active, rz / xp.where(active, pAp, 1), 0).astype(x.dtype)
            total += step * rz
            x += step[:, None] * p
            r -= step[:, None] * Ap
            z = r / preconditioner
            rz_next = (r * z).sum(axis=1)
            ratio = xp.where(active, rz_next / xp.where(rz > 0, rz, 1), 0).astype(x.dtype)
            p = z + ratio[:, None] * p
            rz = rz_next
            active &= (rz > 0) & ((r * r).sum(axis=1) > threshold)
        factors_rotated[...] = x
        return total, pair_diagonal.sum(axis=1).astype(np.float64)

    def _system_blocks(self, indptr_host, d):
        """(first row, end row) blocks whose dense systems fit in SYSTEM_BUDGET elements."""
        n_rows = indptr_host.shape[0] - 1
        rows = max(1, SYSTEM_BUDGET // (d * d))
        return [(start, min(start + rows, n_rows)) for start in range(0, n_rows, rows)]

    def _block_systems(self, start, end, indptr_host, indptr, indices, pair_gram,
                       pair_rhs_sums, others, gram, rhs, shift, scale, reg):
        """Dense A_r and b_r (float64) of rows start..end-1."""
        xp = self.xp
        d = gram.shape[0]
        A = scale[start:end, None, None] * gram + reg[start:end, None, None] * xp.eye(d)
        b = scale[start:end, None] * rhs + shift + pair_rhs_sums[start:end]
        first, last = int(indptr_host[start]), int(indptr_host[end])
        chunk = max(1, PAIR_BUDGET // (d * d))
        flat = A.reshape(end - start, d * d)
        for begin in range(first, last, chunk):
            stop = min(begin + chunk, last)
            y = others[indices[begin:stop]].astype(np.float64)
            outer = (y * pair_gram[begin:stop, None])[:, :, None] * y[:, None, :]
            # the chunk's pairs summed into their rows: a 0/1 (rows x pairs) CSR product
            selector_indptr = xp.clip(indptr[start:end + 1], begin, stop) - begin
            selector = self._csr(xp.ones(stop - begin),
                                 xp.arange(stop - begin, dtype=indices.dtype),
                                 selector_indptr, stop - begin)
            flat += selector @ outer.reshape(stop - begin, d * d)
        return A, b

    def _cholesky_solve(self, A, right):
        """(positive, X) for a block of systems: X solves A X = right for every row. One
        batched Cholesky factorisation and two batched triangular solves (cuSOLVER and
        cuBLAS on a device) when every row is positive definite; otherwise the
        factorisation column by column, which finds the rows that are not."""
        xp = self.xp
        try:
            with linalg_errors(xp):
                L = xp.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            L, positive = self._cholesky_factors(A)
            return positive, self._cholesky_substitutions(L, right)
        if xp is np:  # no batched triangular solve in NumPy: LU of L, exact for the tests
            return (np.ones(A.shape[0], dtype=bool),
                    np.linalg.solve(L.transpose(0, 2, 1), np.linalg.solve(L, right)))
        from cupyx.scipy.linalg import solve_triangular
        forward = solve_triangular(L, right, lower=True)
        return (xp.ones(A.shape[0], dtype=bool),
                solve_triangular(L, forward, lower=True, trans="T"))

    def _cholesky_factors(self, A):
        """Lower Cholesky factors L of a block of systems A (rows x d x d), one column at a
        time for all rows, and per row whether every pivot was > 0 (cpu._cholesky_lower's
        test). From a row's first failing pivot on, its columns are those of the identity,
        so that its L stays finite and the substitutions need no special case."""
        xp = self.xp
        n, d = A.shape[0], A.shape[1]
        L = xp.zeros_like(A)
        positive = xp.ones(n, dtype=bool)
        for j in range(d):
            done = L[:, j, :j]
            pivot = A[:, j, j] - (done * done).sum(axis=1)
            positive &= pivot > 0
            root = xp.sqrt(xp.where(positive, pivot, 1.0))
            L[:, j, j] = root
            below = A[:, j + 1:, j] - (L[:, j + 1:, :j] @ done[:, :, None])[:, :, 0]
            below /= root[:, None]
            L[:, j + 1:, j] = xp.where(positive[:, None], below, 0.0)
        return L, positive

    def _cholesky_substitutions(self, L, right):
        """X with L L^T X = right for every row (right: rows x d x columns): forward then
        back substitution, one unknown at a time for all rows and columns."""
        d = L.shape[1]
        x = right.copy()
        for i in range(d):
            x[:, i] -= (L[:, i:i + 1, :i] @ x[:, :i])[:, 0]
            x[:, i] /= L[:, i, i, None]
        for i in range(d - 1, -1, -1):
            x[:, i] -= (L[:, i + 1:, i][:, None, :] @ x[:, i + 1:])[:, 0]
            x[:, i] /= L[:, i, i, None]
        return x

    def _exact_blocks(self, indptr, indices, pair_gram, pair_rhs, others, gram, rhs, shift,
                      scale, reg, extra_columns=None):
        """For each block of rows: (start, end, A, positive, X) with X the Cholesky solutions
        of A X = [b, extra columns]; X is meaningless where `positive` is False."""
        xp = self.xp
        indptr_host = self._host_copy(indptr)
        pair_rhs_sums = self.weighted_row_sums(indptr, indices, pair_rhs,
                                               others.astype(np.float64))
        for start, end in self._system_blocks(indptr_host, gram.shape[0]):
            A, b = self._block_systems(start, end, indptr_host, indptr, indices, pair_gram,
                                       pair_rhs_sums, others, gram, rhs, shift, scale, reg)
            right = b[:, :, None]
            if extra_columns is not None:
                right = xp.concatenate([right, xp.broadcast_to(extra_columns, A.shape)],
                                       axis=2)
            yield start, end, A, *self._cholesky_solve(A, right)

    def cholesky_rows(self, indptr, indices, pair_gram, pair_rhs, others, gram, rhs, shift,
                      scale, reg, factors):
        """Exact solve of every row system (see cpu.cholesky_rows); overwrites `factors` and
        returns each row's decrease dx^T A dx, NaN where the system is not positive
        definite (whose factors, as in the CPU kernel, are left as they were)."""
        xp = self.xp
        decrease = xp.empty(factors.shape[0])
        for start, end, A, positive, solution in self._exact_blocks(
                indptr, indices, pair_gram, pair_rhs, others, gram, rhs, shift, scale, reg):
            x = solution[:, :, 0]
            change = factors[start:end] - x
            block = xp.einsum("ri,rij,rj->r", change, A, change)
            decrease[start:end] = xp.where(positive, block, np.nan)
            factors[start:end] = xp.where(positive[:, None], x, factors[start:end])
        return decrease

    def cholesky_inverse_sum(self, indptr, indices, pair_gram, pair_rhs, others, gram, rhs,
                             shift, scale, reg, n_chunks):
        """(sum_r A_r^{-1}, sum_r A_r^{-1} b_r, rows not positive definite), as in
        cpu.cholesky_inverse_sum; the sums leave those rows out (`n_chunks` is only the CPU
        kernel's thread split and is ignored)."""
        xp = self.xp
        d = gram.shape[0]
        inverse_sum, solution_sum, n_bad = xp.zeros((d, d)), xp.zeros(d), 0
        for _, _, _, positive, solution in self._exact_blocks(
                indptr, indices, pair_gram, pair_rhs, others, gram, rhs, shift, scale, reg,
                xp.eye(d)):
            solution = xp.where(positive[:, None, None], solution, 0.0)
            n_bad += (~positive).sum()
            solution_sum += solution[:, :, 0].sum(axis=0)
            inverse_sum += solution[:, :, 1:].sum(axis=0)
        return inverse_sum, solution_sum, int(n_bad)

    def _best_of_rows(self, scores, depth):
        """(values, columns) of the `depth` largest finite entries of every row, best
        first, equal values in column order; -inf (column -1) where a row has fewer.

        No sort of whole rows (CuPy's argpartition sorts them, 73 sorts of 2^24 scores
        for a Gowalla evaluation): the depth-th largest of GROUPS_PER_DEPTH * depth group
        maxima is a threshold that at least `depth` entries reach (one per group among
        the best groups), so only the entries at or above it are gathered and sorted,
        a few times `depth` per row."""
        xp = self.xp
        n_rows, n_columns = scores.shape
        finite = scores > -np.inf
        if depth < n_columns:
            width = -(-n_columns // min(n_columns, GROUPS_PER_DEPTH * depth))
            groups = -(-n_columns // width)
            padded = scores
            if groups * width > n_columns:
                padded = xp.concatenate([scores, xp.full(
                    (n_rows, groups * width - n_columns), -np.inf, dtype=scores.dtype)],
                    axis=1)
            maxima = padded.reshape(n_rows, groups, width).max(axis=2)
            threshold = -xp.sort(-maxima, axis=1)[:, depth - 1]
            finite &= scores >= threshold[:, None]
        rows, columns = xp.nonzero(finite)  # row by row, columns increasing
        counts = xp.bincount(rows, minlength=n_rows)
        slots = max(depth, int(counts.max()) if rows.size else 0)
        place = xp.arange(rows.size) - (xp.cumsum(counts) - counts)[rows]
        values = xp.full((n_rows, slots), -np.inf, dtype=scores.dtype)
        found = xp.full((n_rows, slots), -1, dtype=np.int64)
        values[rows, place] = scores[rows, columns]
        found[rows, place] = columns
        order = xp.argsort(-values, axis=1, kind="stable")[:, :depth]
        return (xp.take_along_axis(values, order, axis=1),
                xp.take_along_axis(found, order, axis=1))

    def top_lists(self, queries, targets, depth, mask_indptr=None, mask_indices=None,
                  removed=None, batch=None):
        """The `depth` best targets of each query by inner product, best first, as
        ranking.top_lists: masked pairs (CSR rows per query) and `removed` ids never rank,
        nor do -inf or NaN scores; equal scores rank the lower id first; empty slots hold
        -inf and id -1. `batch` queries are scored at a time (default: as many as keep the
        scores within PAIR_BUDGET). Returns (scores, ids)."""
        xp = self.xp
        n_queries, n_targets = queries.shape[0], targets.shape[0]
        best = xp.full((n_queries, depth), -np.inf, dtype=queries.dtype)
        ids = xp.full((n_queries, depth), -1, dtype=np.int64)
        batch = max(1, min(batch or n_queries, PAIR_BUDGET // max(n_targets, 1)))
        for start in range(0, n_queries, batch):
            stop = min(start + batch, n_queries)
            scores = queries[start:stop] @ targets.T
            scores[xp.isnan(scores)] = -np.inf
            if removed is not None and removed.size:
                scores[:, removed] = -np.inf
            if mask_indptr is not None:
                first, last = int(mask_indptr[start]), int(mask_indptr[stop])
                rows = self.pair_rows(mask_indptr[start:stop + 1] - first, last - first)
                scores[rows, mask_indices[first:last]] = -np.inf
            best[start:stop], ids[start:stop] = self._best_of_rows(scores, depth)
        return best, ids
