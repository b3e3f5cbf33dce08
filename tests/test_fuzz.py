"""Random small inputs, bad ones included: `fit` either refuses them with a clear error or
returns a finite model whose recommendations are valid ids (bench/fuzz.py runs longer)."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings, strategies as st

from rgals import ALSSolver
from rgals.losses import LOSSES
from rgals.solve import SOLVERS

# ordinary values more often than the bad ones, so that most draws reach the solvers
VALUES = [1.0] * 6 + [3.5, 0.25, 2.0] * 2 + [0.0, -1.0, 1e-300, 1e20, 1e300, np.nan, np.inf,
                                            -np.inf]
FORMATS = ["csr", "csc", "coo", "lil", "dense"]
ERRORS = (ValueError, TypeError, FloatingPointError)


@st.composite
def interactions(draw):
    rows = draw(st.integers(1, 7))
    columns = draw(st.integers(1, 7))
    stored = draw(st.lists(st.tuples(st.integers(0, rows - 1), st.integers(0, columns - 1),
                                     st.sampled_from(VALUES)), min_size=1, max_size=25))
    dense = np.zeros((rows, columns))
    for row, column, value in stored:
        dense[row, column] = value
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.bool_]))
    with np.errstate(invalid="ignore", over="ignore"):
        if dtype in (np.int64, np.bool_):
            dense = np.nan_to_num(dense, nan=0.0, posinf=5.0, neginf=-5.0).clip(-1e6, 1e6)
        dense = dense.astype(dtype)
    layout = draw(st.sampled_from(FORMATS))
    return dense if layout == "dense" else sp.csr_matrix(dense).asformat(layout)


parameters = st.fixed_dictionaries({
    "loss": st.sampled_from(list(LOSSES)),
    "factors": st.integers(1, 5),
    "alpha": st.sampled_from([None, 0.0, 0.1, 10.0, 1e10]),
    "regularization": st.sampled_from([None, 1e-6, 1.0, 1e4]),
    "solver": st.sampled_from(list(SOLVERS)),
    "cg_steps": st.integers(1, 3),
    "dtype": st.sampled_from([np.float32, np.float64]),
    "iterations": st.integers(1, 3),
    "random_state": st.integers(0, 3),
})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrix=interactions(), params=parameters)
def test_fit_refuses_clearly_or_returns_a_finite_model(matrix, params):
    model = ALSSolver(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collapse and conversion warnings are allowed
        try:
            model.fit(matrix, show_progress=False)
        except ERRORS as error:
            assert str(error).strip(), f"{type(error).__name__} without a message"
            return
    assert np.isfinite(model.user_factors_).all() and np.isfinite(model.item_factors_).all()
    objective = model.monitor_.history["objective"]
    assert np.isfinite(objective[-1])
    n_items = model.item_factors_.shape[0]
    ids, scores = model.recommend(np.arange(model.user_factors_.shape[0]), N=3)
    assert ids.shape == scores.shape and ids.shape[1] == min(3, n_items)
    assert ((ids >= -1) & (ids < n_items)).all()
    assert not np.isnan(scores).any()


@pytest.mark.filterwarnings("ignore:user_items is a dense")
@pytest.mark.parametrize("matrix", [sp.csr_matrix((3, 4)), np.zeros((2, 0))])
def test_matrices_without_interactions_are_refused(matrix):
    with pytest.raises(ValueError):
        ALSSolver(factors=2).fit(matrix, show_progress=False)
