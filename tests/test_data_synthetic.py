"""rgals.data.synthetic: the generator's shape, determinism and planted structure."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg

from rgals import data


def test_synthetic():
    matrix = data.synthetic(n_users=400, n_items=300, seed=5)
    assert isinstance(matrix, sp.csr_matrix) and matrix.shape == (400, 300)
    assert np.all(matrix.data == 1.0) and matrix.has_sorted_indices
    per_user = np.diff(matrix.indptr)
    assert per_user.min() >= 2 and per_user.max() <= 300
    assert 12 < per_user.mean() < 28
    popularity = np.sort(np.asarray(matrix.sum(axis=0)).ravel())[::-1]
    assert popularity[:30].sum() > 0.3 * popularity.sum()
    assert (data.synthetic(n_users=400, n_items=300, seed=5) != matrix).nnz == 0
    assert (data.synthetic(n_users=400, n_items=300, seed=6) != matrix).nnz > 0


@pytest.mark.parametrize("candidates, gain", [(None, 1.25), (8, 1.1)])
def test_synthetic_structure_is_learnable(candidates, gain):
    """A rank-8 SVD of the training part ranks held-out items far better than popularity
    (less so from candidates: they are drawn by popularity, measured 1.19x at 8)."""
    train, test = data.holdout_split(data.synthetic(600, 300, factors=8, seed=2,
                                                    candidates=candidates), seed=0)
    u, s, vt = scipy.sparse.linalg.svds(train, k=8, random_state=0)
    scores = {"svd": (u * s) @ vt, "popularity": np.tile(np.asarray(train.sum(0)), (600, 1))}
    recall = {}
    for name, score in scores.items():
        score = np.where(train.toarray() > 0, -np.inf, score)
        top = np.argsort(-score, axis=1)[:, :10]
        hits = np.take_along_axis(test.toarray(), top, axis=1).sum(axis=1)
        held = np.diff(test.indptr)
        recall[name] = np.mean(hits[held > 0] / held[held > 0])
    assert recall["svd"] > gain * recall["popularity"], recall


def test_synthetic_errors():
    with pytest.raises(ValueError, match="n_items must be an integer >= 2"):
        data.synthetic(n_items=1)
    with pytest.raises(ValueError, match="mean_activity=50.0 exceeds n_items=10"):
        data.synthetic(n_items=10, mean_activity=50.0)


def test_the_candidate_draw_keeps_the_exact_draws_shape_and_popularity():
    exact = data.synthetic(n_users=2000, n_items=500, seed=5)
    fast = data.synthetic(n_users=2000, n_items=500, seed=5, candidates=8)
    assert fast.shape == exact.shape and np.all(fast.data == 1.0) and fast.has_sorted_indices
    assert (data.synthetic(n_users=2000, n_items=500, seed=5, candidates=8) != fast).nnz == 0
    fast.sum_duplicates()  # distinct items per user: nothing to merge
    assert fast.nnz == len(fast.indices)
    # the same activity (a user short of distinct candidates keeps fewer, rarely)
    per_user, wanted = np.diff(fast.indptr), np.diff(exact.indptr)
    assert np.all(per_user <= wanted) and per_user.sum() >= 0.99 * wanted.sum()
    # popularity as heavy-tailed as the exact draw's, on the same items
    popular = [np.asarray(matrix.sum(axis=0)).ravel() for matrix in (exact, fast)]
    assert np.corrcoef(*popular)[0, 1] > 0.8
    with pytest.raises(ValueError, match="candidates must be an integer >= 1"):
        data.synthetic(candidates=0)
