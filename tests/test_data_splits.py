"""rgals.data.splits: holdout, leave-k-out and validation splits partition the matrix."""

import numpy as np
import pytest
import scipy.sparse as sp

from rgals import data


@pytest.fixture
def matrix(rng):
    dense = (rng.random((60, 40)) < 0.15) * rng.integers(1, 5, (60, 40)).astype(float)
    dense[0] = 0
    dense[1, :] = 0
    dense[1, 3] = 2.0  # a user with a single interaction
    return sp.csr_matrix(dense)


def check_partition(matrix, train, test):
    assert train.shape == test.shape == matrix.shape
    assert train.multiply(test).nnz == 0  # disjoint
    np.testing.assert_array_equal((train + test).toarray(), matrix.toarray())
    per_user = np.diff(matrix.indptr)
    train_count = np.diff(train.indptr)
    assert np.all(train_count[per_user > 0] >= 1)
    return per_user, np.diff(test.indptr)


def test_holdout_split(matrix):
    for ratio in (0.2, 0.5, 0.9):
        train, test = data.holdout_split(matrix, ratio=ratio, seed=3)
        per_user, held = check_partition(matrix, train, test)
        want = np.clip(np.floor(ratio * per_user + 0.5), per_user >= 2, np.maximum(per_user - 1, 0))
        np.testing.assert_array_equal(held, want)
    again = data.holdout_split(matrix, ratio=0.9, seed=3)
    np.testing.assert_array_equal(again[1].toarray(), test.toarray())
    other = data.holdout_split(matrix, ratio=0.9, seed=4)
    assert (other[1] != test).nnz > 0


def test_leave_k_out_and_validation(matrix):
    for k in (1, 3):
        train, test = data.leave_k_out(matrix, k=k, seed=1)
        per_user, held = check_partition(matrix, train, test)
        np.testing.assert_array_equal(held, np.minimum(k, np.maximum(per_user - 1, 0)))
    fit, validation = data.validation_split(matrix)
    per_user, held = check_partition(matrix, fit, validation)
    np.testing.assert_array_equal(
        held, np.clip(np.floor(0.1 * per_user + 0.5), per_user >= 2, np.maximum(per_user - 1, 0)))
    assert np.all(held[per_user >= 2] >= 1)


def test_split_errors(matrix):
    for ratio in (0, 1, 1.5, -0.1, "0.2"):
        with pytest.raises(ValueError, match="ratio must be a number between 0 and 1"):
            data.holdout_split(matrix, ratio=ratio)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        data.leave_k_out(matrix, k=0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        data.holdout_split(matrix, seed=1.5)
    singles = sp.eye(5, 7, format="csr")
    with pytest.raises(ValueError, match="holds nothing out"):
        data.holdout_split(singles)
    with pytest.raises(TypeError, match="scipy.sparse"):
        data.leave_k_out([[1, 2]])
