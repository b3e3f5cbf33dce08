"""rgals.recommender.Recommender serves from the fitted attributes alone: a bare
Recommender given an ALSSolver's fitted arrays answers as the solver does."""

import numpy as np
import pytest

import rgals
from rgals.datasets import load_default
from rgals.recommender import Recommender

FITTED = ("user_factors_", "item_factors_", "previous_item_factors_", "loss_", "user_items_",
          "interaction_totals_")


@pytest.fixture(scope="module")
def fitted():
    train, _ = load_default()
    model = rgals.ALSSolver(factors=8, iterations=3, random_state=0).fit(train,
                                                                          show_progress=False)
    return train, model


def test_a_bare_recommender_serves_as_the_solver(fitted):
    train, model = fitted
    bare = Recommender()
    for name in FITTED:
        setattr(bare, name, getattr(model, name))
    users = np.arange(40)
    for got, expected in zip(bare.recommend(users, N=7), model.recommend(users, N=7)):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(bare.similar_items(np.arange(15), N=4),
                             model.similar_items(np.arange(15), N=4)):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(bare.recalculate_user(3, train[3]),
                                  model.recalculate_user(3, train[3]))


def test_a_bare_recommender_says_it_is_not_fitted():
    with pytest.raises(rgals.NotFittedError, match="this Recommender is not fitted yet"):
        Recommender().recommend(0)
