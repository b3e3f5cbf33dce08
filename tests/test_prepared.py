"""InteractionTotals: what a model keeps of its training data without the matrix."""

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import random_interactions
from rgals.losses import IALS, RG2
from rgals.prepared import InteractionTotals
from rgals.validation import check_interactions


def test_totals_are_the_matrix_counts_and_sums(rng):
    matrix = check_interactions(random_interactions(rng, negative=True), allow_negative=True)
    dense = matrix.toarray()
    totals = InteractionTotals.of(matrix)
    assert totals.shape == dense.shape and totals.known
    np.testing.assert_array_equal(totals.user_counts, (dense != 0).sum(axis=1))
    np.testing.assert_array_equal(totals.item_counts, (dense != 0).sum(axis=0))
    np.testing.assert_allclose(totals.user_sums, dense.sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(totals.item_sums, dense.sum(axis=0), rtol=1e-12, atol=1e-12)
    magnitudes = np.abs(dense[dense != 0])
    assert totals.value_range == (magnitudes.min(), magnitudes.max())
    # a loss bound to the totals is the loss bound to the matrix (RG2's data: no negative
    # values, as its fit requires)
    for loss, data in ((RG2(popularity_exponent=0.5), abs(matrix)), (IALS(alpha=2.0), matrix)):
        # totals do not resolve what the data decides: the matrix does, once
        by_matrix = loss.bind(data)
        by_totals = loss.resolve(data).bind(InteractionTotals.of(data))
        for name, value in vars(by_matrix).items():
            np.testing.assert_array_equal(getattr(by_totals, name), value, err_msg=name)


@pytest.mark.parametrize("values, alpha, unit", [
    ([2.0, 2.0, -2.0], 0.5, True), ([2.0, 2.0, 1.0], 0.5, False), ([1.0, 1.0], 1.0, True),
    ([1.0, 3.0], 1.0, False)])
def test_ials_unit_confidences_from_the_value_range(values, alpha, unit):
    matrix = sp.csr_matrix((values, ([0] * len(values), range(len(values)))),
                           shape=(2, len(values)))
    assert IALS(alpha=alpha).bind(matrix).unit_confidences is unit
    # unknown data (a model from implicit's file): no shortcut
    assert IALS(alpha=alpha).bind(InteractionTotals.unknown((2, 3))).unit_confidences is False
    with pytest.raises(ValueError, match="needs the totals"):
        RG2(alpha=0.01, regularization=1e-3).bind(InteractionTotals.unknown((2, 3)))
    with pytest.raises(ValueError, match="has alpha=None, which the training data decides"):
        RG2().bind(InteractionTotals.of(matrix))
