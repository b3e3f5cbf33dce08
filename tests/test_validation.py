"""Every bad input gets the intended, explanatory error before any kernel runs."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from conftest import random_interactions
from rgals import ALSSolver, NotFittedError, train
from rgals.backend import get_backend
from rgals.losses import make_loss
from rgals.prepared import prepare
from rgals.validation import check_interactions


def quick(**params):
    return ALSSolver(**{"factors": 3, "iterations": 2, "random_state": 0, **params})


@pytest.fixture
def user_items(rng):
    return random_interactions(rng)


@pytest.mark.parametrize("params,message", [
    ({"factors": 0}, "factors must be an integer >= 1"),
    ({"factors": 2.5}, "factors must be an integer"),
    ({"loss": "bpr"}, "unknown loss 'bpr'"),
    ({"solver": "lu"}, "unknown solver 'lu'"),
    ({"backend": "tpu"}, "unknown backend 'tpu'"),
    ({"regularization": 0.0}, "regularization must be a finite number > 0"),
    ({"alpha": -1.0}, "alpha must be a finite number >= 0"),
    ({"alpha": float("nan")}, "alpha must be a finite number"),
    ({"loss": "ials", "alpha": 0.0}, "alpha must be a finite number > 0"),
    ({"iterations": 0}, "iterations must be an integer >= 1"),
    ({"cg_steps": 0}, "cg_steps must be an integer >= 1"),
    ({"dtype": np.int32}, "dtype must be np.float32 or np.float64"),
    ({"num_threads": -1}, "num_threads must be an integer >= 0"),
    ({"random_state": "seed"}, "random_state must be None, an int"),
])
def test_bad_parameters(user_items, params, message):
    with pytest.raises(ValueError, match=message):
        quick(**params).fit(user_items, show_progress=False)


def test_gpu_backend_without_cupy_says_how_to_install(user_items):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    with pytest.raises(ImportError, match=r"pip install 'rgals\[gpu\]'"):
        quick(backend="gpu").fit(user_items, show_progress=False)


@pytest.mark.parametrize("bad,error,message", [
    ([[1, 0], [0, 1]], TypeError, "must be a scipy.sparse matrix"),
    (np.ones(5), ValueError, "must be 2-D"),
    (sp.csr_matrix((0, 4)), ValueError, "is empty"),
    (sp.csr_matrix((3, 4)), ValueError, "has no interactions"),
    (sp.csr_matrix(np.array([[1, 1j]])), TypeError, "must hold real numbers"),
])
def test_bad_matrices(bad, error, message):
    with pytest.raises(error, match=message):
        quick().fit(bad, show_progress=False)


def test_dense_array_is_converted_with_a_warning(user_items):
    with pytest.warns(UserWarning, match="converted it to a scipy.sparse CSR"):
        dense = quick().fit(user_items.toarray(), show_progress=False)
    sparse = quick().fit(user_items, show_progress=False)
    np.testing.assert_array_equal(dense.item_factors_, sparse.item_factors_)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(2, 12), columns=st.integers(2, 12), seed=st.integers(0, 2 ** 32 - 1),
       bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_non_finite_values_are_reported_with_their_position(rows, columns, seed, bad):
    rng = np.random.default_rng(seed)
    values = (rng.random((rows, columns)) < 0.5) * rng.random((rows, columns))
    row, column = rng.integers(rows), rng.integers(columns)
    values[row, column] = bad
    with pytest.raises(ValueError, match=f"NaN or infinite values \\(the first at row {row}, "
                                         f"column {column}\\)"):
        quick().fit(sp.coo_matrix(values), show_progress=False)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), loss=st.sampled_from(["rg2", "rgx"]))
def test_negative_values_are_refused_by_rg_losses_and_read_by_ials(seed, loss):
    rng = np.random.default_rng(seed)
    user_items = random_interactions(rng, n_users=8, n_items=6, density=0.5,
                                     empty_user=False, empty_item=False)
    user_items.data[rng.integers(user_items.nnz)] *= -1
    with pytest.raises(ValueError, match="negative values .* use loss='ials'"):
        quick(loss=loss).fit(user_items, show_progress=False)
    model = quick(loss="ials").fit(user_items, show_progress=False)
    assert np.isfinite(model.item_factors_).all()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # on purpose
def test_diverging_fit_names_the_likely_cause(user_items, backend_name):
    """Inside the solvers (the functional core skips the estimator's range check)."""
    huge = check_interactions(user_items * 1e300, allow_negative=True)
    backend = get_backend(backend_name)
    loss = make_loss("ials", alpha=1e10).bind(backend.put(huge))  # alpha c overflows to inf
    for solver in ("cg", "cholesky"):
        P = backend.put(np.full((huge.shape[0], 3), 0.1, np.float32))
        Q = backend.put(np.full((huge.shape[1], 3), 0.1, np.float32))
        with pytest.raises(FloatingPointError, match="diverged.*too large.*regularization"):
            train(loss, prepare(huge, backend), P, Q, 2, solver=solver)


def test_use_before_fit_is_refused():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        quick().recommend(0)


def test_ids_out_of_range_and_mismatched_user_items(user_items, backend_name):
    model = quick(backend=backend_name).fit(user_items, show_progress=False)
    n_users, n_items = user_items.shape
    with pytest.raises(IndexError, match=f"userid {n_users} is out of range"):
        model.recommend(n_users)
    with pytest.raises(IndexError, match="userid -1 is out of range"):
        model.recommend(np.array([0, -1]))
    with pytest.raises(IndexError, match="itemid .* out of range"):
        model.similar_items(n_items + 3)
    with pytest.raises(IndexError, match="filter_items .* out of range"):
        model.recommend(0, filter_items=[n_items])
    wider = sp.hstack([user_items[:1], sp.csr_matrix((1, 1))], format="csr")
    with pytest.raises(ValueError, match=rf"expected \(1, {n_items}\)"):
        model.recommend(0, user_items=wider)
    # fewer columns, as implicit takes them: the missing ones hold no interactions
    narrow = user_items[:1, :-1].tocsr()
    padded = sp.hstack([narrow, sp.csr_matrix((1, 1))], format="csr")
    for got, expected in zip(model.recommend(0, user_items=narrow),
                             model.recommend(0, user_items=padded)):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="pass X\\[ids\\]"):
        model.recommend([0, 1], user_items=user_items)
    with pytest.raises(TypeError, match="userid must be integers"):
        model.recommend(np.array([0.5]))
    with pytest.raises(ValueError, match="not both"):
        model.recommend(0, items=[1, 2], filter_items=[3])


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e16), (np.float32, 1e40),
                                          (np.float64, 1e160)])
@pytest.mark.parametrize("loss", ["rg2", "ials"])
def test_values_beyond_the_solvers_range_are_refused_before_any_kernel(user_items, dtype,
                                                                       scale, loss):
    """Large enough values overflow inside CG (a fit that 'converges' after one sweep and
    ranks at random, or a Numba error): a clear error instead, saying what to do."""
    with pytest.raises(ValueError, match="values up to .*Rescale the values"):
        ALSSolver(factors=4, loss=loss, dtype=dtype).fit(user_items * scale,
                                                          show_progress=False)


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e-300), (np.float32, 1e-25),
                                          (np.float64, 1e-300)])
@pytest.mark.parametrize("loss", ["rg2", "rgx"])
def test_values_so_small_that_the_weights_underflow_are_refused(user_items, dtype, scale,
                                                                loss):
    """All values tiny: RG2's item regularisation (a sum over the catalogue) underflows
    to zero in float32 and CG divided by it (a ZeroDivisionError from inside Numba)."""
    with pytest.raises(ValueError, match="values only up to .*underflow.*Rescale"):
        ALSSolver(factors=1, loss=loss, alpha=0.0, solver="cg", dtype=dtype,
                  regularization=1e-6).fit(user_items * scale, show_progress=False)


def test_small_values_within_the_range_are_not_refused(user_items):
    # the data-derived regularization follows the values' scale (it stays under the
    # collapse threshold, which scales with them): the factors keep their size
    model = ALSSolver(factors=4, iterations=3, random_state=0, tol=0.0).fit(
        user_items * 1e-12, show_progress=False)
    assert model.loss_.regularization < 1e-10 and np.abs(model.user_factors_).max() > 0.1
    # RG2 itself is not scale-free: a fixed lam shrinks such factors to zero, with a warning
    with pytest.warns(RuntimeWarning, match="shrank to about zero"):
        model = ALSSolver(factors=4, iterations=3, random_state=0, tol=0.0,
                          regularization=1e-3).fit(user_items * 1e-12, show_progress=False)
    assert np.isfinite(model.user_factors_).all()


def test_large_values_within_the_range_still_fit(user_items):
    model = ALSSolver(factors=4, iterations=4, random_state=0, tol=0.0).fit(
        user_items * 1e14, show_progress=False)
    assert len(model.monitor_.rows) == 8
    assert np.isfinite(model.user_factors_).all() and np.abs(model.item_factors_).max() > 0


def test_a_regularization_that_overflows_names_reg_exponent(user_items):
    with pytest.raises(ValueError, match="reg_exponent=400 .*smaller reg_exponent"):
        ALSSolver(factors=4, reg_exponent=400).fit(user_items, show_progress=False)
