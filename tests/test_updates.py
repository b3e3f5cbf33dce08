"""partial_fit_users / partial_fit_items: rows solved exactly against the other side,
the model grown consistently (factors, totals, training rows, loss), kept by save/load."""

import threading

import numpy as np
import pytest
import scipy.sparse as sp

import rgals
from conftest import BruteForce, random_interactions
from rgals import ALSSolver
from rgals.backend import to_host
from rgals.prepared import InteractionTotals


def checker_board(size):
    """implicit's test matrix: even users like even items, odd users odd ones; no diagonal."""
    values = np.zeros((size, size))
    for row in range(size):
        values[row, row % 2::2] = 1.0
    return sp.csr_matrix(values - np.eye(size))


@pytest.mark.parametrize("params", [dict(loss="ials", regularization=1e-6), dict(),
                                    dict(loss="rgx")], ids=["ials", "rg2", "rgx"])
def test_implicits_incremental_retrain_passes(params):
    """implicit 0.7.3 tests/als_test.py test_incremental_retrain, as written there."""
    likes = checker_board(50)
    model = ALSSolver(factors=2, random_state=23, **params).fit(likes, show_progress=False)
    ids, _ = model.recommend(0, likes[0])
    assert ids[0] == 0
    # user 0 now likes what user 1 likes
    model.partial_fit_users([0], likes[1])
    ids, _ = model.recommend(0, likes[1])
    assert ids[0] == 1
    # a new user at 100 (rows without columns for new items: as implicit takes them)
    model.partial_fit_users([100], likes[1])
    ids, _ = model.recommend(100, likes[1])
    assert ids[0] == 1
    # a new item at 100 is recommended at once
    model.partial_fit_items([100], likes[1])
    ids, _ = model.recommend(1, likes[1], N=2)
    assert set(ids) == {1, 100}
    model.partial_fit_users([101], likes[1])
    model.partial_fit_items([101], likes[1])
    ids, _ = model.recommend(101, likes[1], N=3)
    assert set(ids) == {1, 100, 101}


def fitted(rng, loss="rg2", backend="cpu", **params):
    user_items = random_interactions(rng, n_users=21, n_items=15, density=0.3)
    params = dict(factors=4, loss=loss, alpha=0.3 if loss != "ials" else 2.0,
                  regularization=0.05, iterations=3, solver="cholesky", dtype=np.float64,
                  random_state=int(rng.integers(1000)), backend=backend, **params)
    return ALSSolver(**params).fit(user_items, show_progress=False)


def brute_force(model):
    loss = model.loss_
    return BruteForce(loss.name, model.user_items_, loss.alpha, loss.regularization,
                      getattr(loss, "reg_exponent", 1.0))


@pytest.mark.parametrize("loss", ["rg2", "ials"])
def test_partial_fits_solve_their_rows_exactly_and_grow_the_model(rng, loss, backend_name):
    model = fitted(rng, loss, backend_name)
    before = {name: to_host(getattr(model, name)) for name in
              ("user_factors_", "item_factors_", "previous_item_factors_")}
    old = model.user_items_.toarray()
    n_users, n_items = old.shape
    # replace users 2 and 5, add users 23 and 25 (24 is skipped over: no interactions)
    users = np.array([5, 23, 2, 25])
    rows = random_interactions(rng, n_users=4, n_items=n_items, empty_user=False,
                               empty_item=False)
    assert model.partial_fit_users(users, rows) is model
    expected = np.zeros((26, n_items))
    expected[:n_users] = old
    expected[users] = rows.toarray()
    np.testing.assert_array_equal(model.user_items_.toarray(), expected)
    totals = InteractionTotals.of(model.user_items_)
    for field in InteractionTotals.FIELDS:
        np.testing.assert_array_equal(getattr(model.interaction_totals_, field),
                                      getattr(totals, field))
    assert model.loss_.n_users == 26 and model.user_factors_.shape == (26, 4)
    # the changed users minimise F with the items their fit saw (previous_item_factors_)
    P, Q = to_host(model.user_factors_), to_host(model.previous_item_factors_)
    gradient = brute_force(model).gradients(P, Q)[0]
    assert np.abs(gradient[users]).max() < 1e-8 * max(1.0, np.abs(P[users]).max())
    # the skipped user has the factors of a user without interactions; others stay
    empty = model.recalculate_user(24, sp.csr_matrix((1, n_items)))
    np.testing.assert_allclose(P[24], to_host(empty), atol=1e-12)
    kept = np.setdiff1d(np.arange(n_users), users)
    np.testing.assert_array_equal(P[kept], before["user_factors_"][kept])
    np.testing.assert_array_equal(to_host(model.item_factors_), before["item_factors_"])

    # items: replace item 1, add item 16 (15 skipped), against the current users
    items = np.array([16, 1])
    item_rows = random_interactions(rng, n_users=2, n_items=26, empty_user=False,
                                    empty_item=False)
    model.partial_fit_items(items, item_rows)
    assert model.user_items_.shape == (26, 17) and model.item_factors_.shape == (17, 4)
    np.testing.assert_array_equal(model.user_items_.toarray()[:, items].T,
                                  item_rows.toarray())
    P, Q = to_host(model.user_factors_), to_host(model.item_factors_)
    gradient = brute_force(model).gradients(P, Q)[1]
    assert np.abs(gradient[items]).max() < 1e-8 * max(1.0, np.abs(Q[items]).max())
    previous = to_host(model.previous_item_factors_)
    # the users saw the old items: new ones stand for themselves in fold-in
    np.testing.assert_array_equal(previous[:n_items], before["previous_item_factors_"])
    np.testing.assert_array_equal(previous[[15, 16]], Q[[15, 16]])
    ids, _ = model.recommend(np.arange(26), N=3)
    assert ids.shape == (26, 3) and ids.max() <= 16


def test_the_same_partial_fit_twice_changes_nothing_the_second_time(rng):
    model = fitted(rng)
    rows = random_interactions(rng, n_users=3, n_items=15, empty_user=False)
    model.partial_fit_users([0, 30, 7], rows)
    once = {name: to_host(getattr(model, name)) for name in
            ("user_factors_", "item_factors_", "previous_item_factors_")}
    matrix = model.user_items_.copy()
    model.partial_fit_users([0, 30, 7], rows)
    for name, array in once.items():
        np.testing.assert_array_equal(getattr(model, name), array)
    assert (model.user_items_ != matrix).nnz == 0


@pytest.mark.parametrize("where", ["model", "model.npz"])
def test_a_grown_model_survives_save_and_load(rng, tmp_path, where):
    model = fitted(rng)
    model.partial_fit_users([30], random_interactions(rng, n_users=1, n_items=15,
                                                      empty_user=False))
    model.partial_fit_items([20], random_interactions(rng, n_users=1, n_items=31,
                                                      empty_user=False))
    model.save(tmp_path / where)
    loaded = rgals.load(tmp_path / where)
    for name in ("user_factors_", "item_factors_", "previous_item_factors_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert (loaded.user_items_ != model.user_items_).nnz == 0
    assert loaded.loss_.get_params() == model.loss_.get_params()
    np.testing.assert_array_equal(loaded.recommend(np.arange(31), N=4)[0],
                                  model.recommend(np.arange(31), N=4)[0])
    # a later fit takes the grown data
    refit = ALSSolver(factors=3, iterations=2, random_state=0).fit(loaded.user_items_,
                                                                   show_progress=False)
    assert refit.user_factors_.shape == (31, 3) and refit.item_factors_.shape == (21, 3)


def test_a_model_saved_without_interactions_may_add_rows(rng, tmp_path):
    model = fitted(rng)
    model.save(tmp_path / "bare", interactions=False)
    bare = rgals.load(tmp_path / "bare")
    rows = random_interactions(rng, n_users=2, n_items=15, empty_user=False)
    for each in (model, bare):
        each.partial_fit_users([21, 23], rows)
    assert bare.user_items_ is None
    for field in InteractionTotals.FIELDS:
        np.testing.assert_array_equal(getattr(bare.interaction_totals_, field),
                                      getattr(model.interaction_totals_, field))
    assert bare.interaction_totals_.value_range == pytest.approx(
        model.interaction_totals_.value_range)
    np.testing.assert_allclose(bare.user_factors_, model.user_factors_, atol=1e-12)
    with pytest.raises(ValueError, match="old interactions of user 0 .* are unknown"):
        bare.partial_fit_users([0, 22], rows)
    # a new item may get users
    bare.partial_fit_items([15], random_interactions(rng, n_users=1, n_items=24,
                                                     empty_user=False))
    assert bare.item_factors_.shape[0] == bare.interaction_totals_.shape[1] == 16


@pytest.mark.parametrize("call, message", [
    (lambda m: m.partial_fit_users([1, 1], sp.csr_matrix((2, 15))), "id 1 more than once"),
    (lambda m: m.partial_fit_users([], sp.csr_matrix((0, 15))), "userids is empty"),
    (lambda m: m.partial_fit_users([1, 2], sp.csr_matrix((1, 15))), "one row per"),
    (lambda m: m.partial_fit_users([1], sp.csr_matrix((1, 16))), r"expected \(1, 15\)"),
    (lambda m: m.partial_fit_users([-1], sp.csr_matrix((1, 15))), "out of range"),
    (lambda m: m.partial_fit_items([0], sp.csr_matrix([[-1.0] + [0] * 20])),
     "negative values"),
    (lambda m: m.partial_fit_items([0.5], sp.csr_matrix((1, 21))), "must be integers"),
])
def test_bad_partial_fits_are_clear_errors_and_change_nothing(rng, call, message):
    model = fitted(rng)
    factors = np.array(model.user_factors_)
    with pytest.raises((ValueError, TypeError, IndexError), match=message):
        call(model)
    np.testing.assert_array_equal(model.user_factors_, factors)
    assert model.user_items_.shape == (21, 15)
    with pytest.raises(rgals.NotFittedError):
        ALSSolver().partial_fit_users([0], sp.csr_matrix((1, 3)))


def test_readers_in_other_threads_see_a_whole_model_while_users_are_added(rng):
    model = fitted(rng)
    rows = random_interactions(rng, n_users=1, n_items=15, empty_user=False)
    errors, done = [], threading.Event()

    def serve():
        while not done.is_set():
            try:
                n = model.user_factors_.shape[0]
                ids, scores = model.recommend(np.arange(n), N=3)
                assert ids.shape == (n, 3) and np.isfinite(scores[:, 0]).all()
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)
                return

    readers = [threading.Thread(target=serve) for _ in range(2)]
    for reader in readers:
        reader.start()
    for user in range(21, 61):
        model.partial_fit_users([user], rows)
    done.set()
    for reader in readers:
        reader.join()
    assert not errors, errors[0]
    assert model.user_factors_.shape[0] == 61


# -- warm starts ---------------------------------------------------------------------

@pytest.mark.parametrize("params", [dict(loss="rg2", regularization=0.05),
                                    dict(loss="rgx", alpha=0.0, regularization=0.05),
                                    dict(loss="ials", regularization=0.1),
                                    dict(loss="rg2", solver="cholesky", dtype=np.float32)],
                         ids=["rg2", "rgx", "ials", "cholesky"])
def test_a_warm_start_on_unchanged_data_equals_continuing_the_fit(rng, params,
                                                                  backend_name):
    user_items = random_interactions(rng, n_users=40, n_items=25, density=0.2)
    common = dict(factors=4, tol=0.0, random_state=int(rng.integers(1000)),
                  backend=backend_name, regularization=0.05, dtype=np.float64)
    common.update(params)
    whole = ALSSolver(iterations=7, **common).fit(user_items, show_progress=False)
    part = ALSSolver(iterations=4, **common).fit(user_items, show_progress=False)
    seen = []
    part.set_params(iterations=3).fit(user_items, show_progress=False, warm_start=True,
                                      callback=lambda sweep, *_: seen.append(sweep))
    for name in ("user_factors_", "item_factors_", "previous_item_factors_"):
        got, expected = to_host(getattr(part, name)), to_host(getattr(whole, name))
        if params.get("solver") == "cholesky":  # no rotation: bit for bit
            np.testing.assert_array_equal(got, expected, name)
        else:  # a fit runs in a rotated basis it undoes at the end: equal up to rounding
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, err_msg=name)
    # the monitor goes on: sweeps 5-7 in a new segment, the same objectives
    history, continued = whole.monitor_.history, part.monitor_.history
    np.testing.assert_array_equal(continued["sweep"], history["sweep"])
    np.testing.assert_allclose(continued["objective"], history["objective"], rtol=1e-6)
    assert continued["segment"][-1] == history["segment"][-1] + 1 and seen == [4, 5, 6]


def test_a_warm_start_grows_the_model_and_keeps_the_chosen_regularization(rng):
    user_items = data_of(rng, 300, 80)
    model = ALSSolver(factors=4, iterations=12, random_state=3).fit(user_items,
                                                                     show_progress=False)
    assert model.regularization_path_  # the default: lam chosen on the path
    chosen, path = model.loss_.get_params(), model.regularization_path_
    grown = sp.vstack([sp.hstack([user_items, sp.csr_matrix((300, 5))]),
                       data_of(rng, 20, 85)], format="csr")
    before = np.array(model.user_factors_)
    model.set_params(iterations=2).fit(grown, show_progress=False, warm_start=True)
    assert model.user_factors_.shape == (320, 4) and model.item_factors_.shape == (85, 4)
    assert model.loss_.get_params() == chosen and model.regularization_path_ == path
    assert model.loss_.n_users == 320 and model.loss_.n_items == 85
    assert not np.array_equal(model.user_factors_[:300], before)  # it went on
    assert np.isfinite(model.user_factors_).all() and np.abs(model.user_factors_[300:]).max() > 0
    with pytest.raises(ValueError, match="may only grow"):
        model.fit(user_items[:10], warm_start=True, show_progress=False)
    with pytest.raises(ValueError, match="warm_start needs factors=4"):
        model.set_params(factors=5).fit(grown, warm_start=True, show_progress=False)
    with pytest.raises(ValueError, match="warm_start must be True or False"):
        model.set_params(factors=4).fit(grown, warm_start="yes", show_progress=False)
    # an unfitted model: a fresh fit
    unfitted = ALSSolver(factors=4, iterations=2, random_state=3)
    fresh_fit = ALSSolver(factors=4, iterations=2, random_state=3)
    np.testing.assert_array_equal(
        unfitted.fit(grown, warm_start=True, show_progress=False).user_factors_,
        fresh_fit.fit(grown, show_progress=False).user_factors_)


def data_of(rng, n_users, n_items):
    return random_interactions(rng, n_users=n_users, n_items=n_items, density=0.05,
                               empty_user=False, empty_item=False)
