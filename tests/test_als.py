"""ALSSolver as a user sees it: fit, conventions, agreement between paths and with implicit."""

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from conftest import BruteForce, host_factors, random_interactions
from rgals import ALSSolver, FitInputs
from rgals.losses import IALS
from rgals.solve import solve_rows
from rgals.validation import check_interactions


def fit(user_items, callback=None, **params):
    params = {"factors": 5, "iterations": 5, "random_state": 3, "dtype": np.float64,
              "regularization": 0.05, **params}
    return ALSSolver(**params).fit(user_items, show_progress=False, callback=callback)


def test_fit_returns_self_and_keeps_parameters_unchanged(rng):
    user_items = random_interactions(rng)
    solver = ALSSolver(factors=6, loss="rgx", dtype="float32", iterations=2)
    assert solver.fit(user_items, show_progress=False) is solver
    assert solver.dtype == "float32" and solver.factors == 6
    assert solver.user_factors_.shape == (user_items.shape[0], 6)
    assert solver.item_factors_.shape == (user_items.shape[1], 6)
    assert solver.user_factors_.dtype == np.float32
    assert solver.get_params()["loss"] == "rgx"
    assert "loss='rgx'" in repr(solver)


@pytest.mark.parametrize("convert", [sp.csr_matrix, sp.csc_matrix, sp.coo_matrix,
                                     sp.csr_array, sp.coo_array])
def test_fit_accepts_every_sparse_format(rng, convert):
    user_items = random_interactions(rng)
    reference = fit(user_items)
    other = fit(convert(user_items))
    np.testing.assert_array_equal(other.item_factors_, reference.item_factors_)


@pytest.mark.parametrize("loss", ["rg2", "rgx"])
def test_alpha_zero_fast_path_equals_general_path(rng, loss):
    user_items = random_interactions(rng)
    fast = fit(user_items, loss=loss, alpha=0.0, solver="auto")
    general = fit(user_items, loss=loss, alpha=0.0, solver="cholesky")
    for a, b in ((fast.user_factors_, general.user_factors_),
                 (fast.item_factors_, general.item_factors_)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.abs(b).max())


@pytest.mark.parametrize("loss,alpha,solver", [("rg2", 0.0, "auto"), ("rg2", 0.5, "cholesky"),
                                               ("rgx", 0.5, "cholesky"), ("ials", 2.0, "cg")])
def test_float32_stays_close_to_float64(rng, loss, alpha, solver):
    user_items = random_interactions(rng, n_users=40, n_items=30)
    results = [fit(user_items, loss=loss, alpha=alpha, solver=solver, dtype=dtype)
               for dtype in (np.float32, np.float64)]
    for side in ("user_factors_", "item_factors_"):
        single, double = (getattr(result, side) for result in results)
        assert single.dtype == np.float32
        error = np.linalg.norm(single - double) / np.linalg.norm(double)
        assert error <= 1e-4


@pytest.mark.parametrize("loss,alpha,solver", [("rg2", 0.0, "auto"), ("rg2", 0.5, "cg"),
                                               ("rgx", 0.5, "cholesky"), ("rgx", 0.5, "cg"),
                                               ("ials", 1.0, "auto"), ("ials", 3.0, "cg")])
def test_objective_never_increases_during_fit(rng, loss, alpha, solver, backend_name):
    user_items = random_interactions(rng)
    records = []
    fit(user_items, loss=loss, alpha=alpha, solver=solver, iterations=8, monitor="full",
        backend=backend_name,
        callback=lambda iteration, elapsed, record: records.append(record))
    objective = np.array([record["objective"] for record in records])
    assert len(objective) == 8
    assert np.all(np.diff(objective) <= 1e-10 * np.abs(objective[:-1]))
    assert all(record["user_decrease"] >= 0 and record["item_decrease"] >= 0
               for record in records)


def test_callback_returning_false_stops_the_fit(rng):
    seen = []
    fit(random_interactions(rng), iterations=10,
        callback=lambda iteration, elapsed, record: seen.append(iteration) or iteration < 2)
    assert seen == [0, 1, 2]


def test_users_and_items_without_interactions_get_finite_factors(rng, backend_name):
    user_items = random_interactions(rng, empty_user=True, empty_item=True).tolil()
    user_items[0, :] = 0
    user_items[:, 0] = 0
    for loss, alpha in (("rg2", 0.5), ("rgx", 0.0), ("ials", 1.0)):
        P, Q = host_factors(fit(user_items.tocsr(), loss=loss, alpha=alpha,
                                backend=backend_name))
        assert np.isfinite(P).all() and np.isfinite(Q).all()
        assert np.abs(P[0]).max() <= 1e-8  # no evidence: p_u -> 0


def test_same_seed_same_model_and_other_seed_other_model(rng, backend_name):
    user_items = random_interactions(rng)
    a, b, c = (host_factors(fit(user_items, random_state=seed, backend=backend_name))[1]
               for seed in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_ials_objective_after_fit_equals_brute_force(rng):
    user_items = random_interactions(rng, negative=True)
    records = []
    solver = fit(user_items, loss="ials", alpha=2.0,
                 callback=lambda iteration, elapsed, record: records.append(record))
    brute = BruteForce("ials", check_interactions(user_items, allow_negative=True), 2.0, 0.05)
    expected = brute.objective(solver.user_factors_, solver.item_factors_)
    assert records[-1]["objective"] == pytest.approx(expected, rel=1e-10)


def test_ials_factors_solve_the_same_normal_equations_as_implicit(rng):
    implicit_als = pytest.importorskip("implicit.cpu.als")
    user_items = random_interactions(rng, n_users=60, n_items=40, empty_user=False,
                                     empty_item=False).astype(np.float32)
    with threadpool_limits(1, "blas"):  # as implicit asks (else it warns)
        peer = implicit_als.AlternatingLeastSquares(factors=6, regularization=0.1, alpha=3.0,
                                                    use_cg=False, iterations=4, random_state=1)
        peer.fit(user_items, show_progress=False)
    # implicit's last half step solved the items given its users: ours must agree
    loss = IALS(alpha=3.0, regularization=0.1).bind(check_interactions(user_items))
    ours = peer.item_factors.astype(np.float64).copy()
    systems = loss.item_systems(peer.user_factors.astype(np.float64),
                                check_interactions(user_items.T))
    solve_rows(systems, ours, "cholesky")
    np.testing.assert_allclose(ours, peer.item_factors, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("name,hyperparameters", [
    ("rg2", dict(alpha=0.3, regularization=0.02, reg_exponent=0.5)),
    ("rgx", dict(alpha=0.0)), ("ials", dict(alpha=2.0, regularization=0.1))])
def test_a_loss_name_and_a_loss_object_give_the_same_model(rng, name, hyperparameters):
    from rgals.losses import LOSSES
    user_items = random_interactions(rng)
    params = dict(factors=4, iterations=3, random_state=2, dtype=np.float64)
    by_name = ALSSolver(loss=name, **hyperparameters, **params).fit(user_items,
                                                                    show_progress=False)
    loss = LOSSES[name](**hyperparameters)
    by_object = ALSSolver(loss=loss, **params).fit(user_items, show_progress=False)
    np.testing.assert_array_equal(by_object.user_factors_, by_name.user_factors_)
    np.testing.assert_array_equal(by_object.item_factors_, by_name.item_factors_)
    # what the data decides (rgx's regularization here) is resolved the same way
    assert by_object.loss_ == by_name.loss_ == loss.resolve(check_interactions(user_items))
    assert by_object.loss is loss and not loss.bound  # the user's object is left as it was
    assert loss.get_params() == LOSSES[name](**hyperparameters).get_params()
    with pytest.raises(ValueError, match="given both"):
        ALSSolver(loss=loss, alpha=0.5).fit(user_items, show_progress=False)


@pytest.fixture
def with_a_cold_user(rng):
    """A fitted model whose user 3 has no interaction (so zero factors)."""
    matrix = random_interactions(rng, n_users=30, n_items=20, density=0.3,
                                 empty_user=False).tolil()
    matrix[3, :] = 0
    matrix = matrix.tocsr()
    matrix.eliminate_zeros()
    return ALSSolver(factors=4, random_state=0, iterations=3).fit(matrix, show_progress=False)


def popular_order(model, allowed):
    """`allowed` ids by interactions, most first (ties: the lower id first)."""
    counts = np.bincount(model.user_items_.indices, minlength=model.user_items_.shape[1])
    return sorted(allowed, key=lambda item: (-counts[item], item))


@pytest.mark.parametrize("loss", ["rg2", "ials"])
def test_a_user_without_interactions_gets_the_most_popular_items(with_a_cold_user, loss):
    model = with_a_cold_user.set_params(loss=loss).fit(with_a_cold_user.user_items_,
                                                       show_progress=False)
    assert not np.any(model.user_factors_[3])
    ids, scores = model.recommend(3, N=5)
    assert ids.tolist() == popular_order(model, range(20))[:5]
    assert scores.tolist() == [0.0] * 5
    top = int(ids[0])
    filtered, _ = model.recommend(3, N=4, filter_items=[top])
    assert filtered.tolist() == popular_order(model, [i for i in range(20) if i != top])[:4]
    ids, _ = model.recommend(3, N=3, items=[7, 2, 9, 11])
    assert ids.tolist() == popular_order(model, [7, 2, 9, 11])[:3]
    # in a batch only the cold row changes
    batch, _ = model.recommend([0, 3], N=5)
    assert batch[1].tolist() == popular_order(model, range(20))[:5]
    assert batch[0].tolist() == model.recommend(0, N=5)[0].tolist()


def test_cold_is_decided_by_the_factors_used_not_by_the_rows_to_filter(with_a_cold_user):
    model = with_a_cold_user
    empty = sp.csr_matrix((1, 20))
    # user 0 has training interactions: an empty filter row keeps its own ranking
    ids, _ = model.recommend(0, empty, N=5)
    scores = model.item_factors_ @ model.user_factors_[0]
    assert ids.tolist() == np.argsort(-scores, kind="stable")[:5].tolist()
    # folding in an empty row makes it cold: the most popular items
    ids, _ = model.recommend(0, empty, N=5, recalculate_user=True)
    assert ids.tolist() == popular_order(model, range(20))[:5]
    # the cold user 3 with a row to filter: the most popular of the others, and liked
    # candidates last, as for any user
    liked = sp.csr_matrix(([1.0, 1.0], ([0, 0], popular_order(model, range(20))[:2])),
                          shape=(1, 20))
    ids, _ = model.recommend(3, liked, N=5)
    assert ids.tolist() == popular_order(model, range(20))[2:7]
    top = popular_order(model, range(20))[0]
    ids, scores = model.recommend(3, liked, N=3, items=[top, 5, 6])
    assert ids.tolist() == popular_order(model, [5, 6]) + [top]
    assert scores.tolist() == [0.0, 0.0, -np.inf]


def test_recommend_shapes_repeated_candidates_and_huge_ids(with_a_cold_user):
    model = with_a_cold_user
    ids, scores = model.recommend([0, 1], N=50)
    assert ids.shape == scores.shape == (2, 20)  # at most the number of items
    liked = model.user_items_[0].indices
    assert set(ids[0][ids[0] >= 0]) == set(range(20)) - set(liked)
    assert np.all(ids[0][20 - liked.size:] == -1) and np.all(np.isinf(scores[0][20 - liked.size:]))
    once, _ = model.recommend(0, N=10, items=[5, 5, 6, 5], filter_already_liked_items=False)
    assert sorted(once.tolist()) == [5, 6]
    with pytest.raises(IndexError, match="out of range"):
        model.recommend(2 ** 70)
    with pytest.raises(IndexError, match="9223372036854775808 is out of range"):
        model.recommend(np.array([2 ** 63], dtype=np.uint64))


def test_ids_are_int32_and_implicits_evaluation_takes_the_model(rng):
    from rgals.data import holdout_split, synthetic
    from rgals.metrics import ranking_metrics
    train, test = holdout_split(synthetic(120, 60, seed=int(rng.integers(1000))), ratio=0.2,
                                seed=1)
    model = ALSSolver(factors=6, random_state=0, iterations=4).fit(train, show_progress=False)
    for ids, _ in (model.recommend([0, 1], N=5), model.recommend(0, N=5),
                   model.similar_items([2, 3], N=4), model.similar_users(1, N=3),
                   model.recommend(0, N=3, items=[4, 9, 1, 7])):
        assert ids.dtype == np.int32
    evaluation = pytest.importorskip("implicit.evaluation")
    theirs = evaluation.ranking_metrics_at_k(model, train, test, K=10, show_progress=False)
    ours = ranking_metrics(model.user_factors_, model.item_factors_, test, train, K=10,
                           metrics=("ndcg", "map"))
    assert theirs["ndcg"] == pytest.approx(ours["ndcg@10"], rel=1e-6)
    assert theirs["map"] == pytest.approx(ours["map@10"], rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_users_scores_do_not_depend_on_the_batch_it_is_asked_in(rng, dtype):
    matrix = random_interactions(rng, n_users=300, n_items=500, density=0.05)
    model = ALSSolver(factors=32, random_state=0, iterations=3, dtype=dtype).fit(
        matrix, show_progress=False)
    users = np.arange(300)
    batch_ids, batch_scores = model.recommend(users, N=10)
    P, Q = model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
    for user in (0, 7, 123, 299):
        ids, scores = model.recommend(user, N=10)
        np.testing.assert_array_equal(ids, batch_ids[user])
        np.testing.assert_array_equal(scores, batch_scores[user])  # not only close: equal
        valid = ids >= 0
        np.testing.assert_allclose(scores[valid], (Q[ids[valid]] @ P[user]).astype(dtype),
                                   rtol=1e-6)


def test_items_without_interactions_are_not_similar_to_anything(rng):
    matrix = random_interactions(rng, n_users=30, n_items=12, empty_item=False).tolil()
    matrix[:, [4, 7]] = 0
    matrix = matrix.tocsr()
    matrix.eliminate_zeros()
    model = ALSSolver(factors=3, random_state=0, iterations=3).fit(matrix, show_progress=False)
    # they share one factor: without the rule they would be cosine 1 to each other
    np.testing.assert_allclose(model.item_factors_[4], model.item_factors_[7], rtol=1e-5)
    ids, scores = model.similar_items(0, N=12)
    assert 4 not in ids and 7 not in ids and ids[0] == 0
    listed = ids[ids >= 0]
    Q = model.item_factors_.astype(np.float64)
    cosines = Q[listed] @ Q[0] / np.linalg.norm(Q[listed], axis=1) / np.linalg.norm(Q[0])
    np.testing.assert_allclose(scores[:listed.size], cosines, rtol=1e-5, atol=1e-6)
    ids, scores = model.similar_items(4, N=4)
    assert ids.tolist() == [4] + popular_order(model, [i for i in range(12)
                                                      if i not in (4, 7)])[:3]
    assert scores.tolist() == [1.0, 0.0, 0.0, 0.0]
    # named as candidates, they are ranked like any other item
    ids, scores = model.similar_items(7, N=2, items=[4, 7, 1])
    # (equal up to the rounding of the solves: either may come first)
    assert sorted(ids.tolist()) == [4, 7] and scores == pytest.approx([1.0, 1.0])


def checker_board(size):
    """Even users like even items, odd users odd ones; the diagonal is held out."""
    liked = (np.add.outer(np.arange(size), np.arange(size)) % 2 == 0).astype(float)
    return sp.csr_matrix(liked - np.eye(size))


@pytest.mark.parametrize("loss", ["rg2", "rgx", "ials"])
def test_the_checker_board_behaviour_implicit_users_rely_on(loss):
    """implicit's own behavioural checks: the held-out item comes first, N beyond the
    items returns what there is, filter_items removes ids, similar items share parity."""
    user_items = checker_board(50)
    model = ALSSolver(loss=loss, factors=3, random_state=0).fit(user_items,
                                                               show_progress=False)
    for user in range(50):
        ids, _ = model.recommend(user, user_items[user], N=1)
        assert ids.tolist() == [user]
    ids, _ = model.recommend(0, user_items[0], N=10000)
    assert 0 < (ids >= 0).sum() <= 50 - user_items[0].nnz
    ids, _ = model.recommend(0, user_items[0], N=1, filter_items=[0])
    assert 0 not in ids.tolist()
    for item in range(50):
        ids, _ = model.similar_items(item, N=10)
        assert all(other % 2 == item % 2 for other in ids)


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_and_single_recommend_agree_on_the_checker_board(seed):
    """implicit's test_recommend_batch: its items are near-ties within float32 rounding,
    where BLAS sums a batch and a single query differently."""
    user_items = checker_board(50)
    model = ALSSolver(random_state=seed).fit(user_items, show_progress=False)
    users = np.arange(50)
    for filtered in (True, False):
        ids, scores = model.recommend(users, user_items, N=5,
                                      filter_already_liked_items=filtered)
        for user in users:
            one_ids, one_scores = model.recommend(user, user_items[user], N=5,
                                                  filter_already_liked_items=filtered)
            np.testing.assert_array_equal(one_ids, ids[user])
            np.testing.assert_array_equal(one_scores, scores[user])


@pytest.mark.parametrize("loss", ["rg2", "rgx", "ials"])
def test_recalculate_user_gives_the_fitted_users_scores_on_the_checker_board(loss):
    """implicit's check (places=3): folding a user's own row back in with the default
    (CG) fit changes its top score by less than 5e-4, batch and single alike."""
    user_items = checker_board(50)
    model = ALSSolver(loss=loss, random_state=0).fit(user_items, show_progress=False)
    users = np.arange(50)
    ids, scores = model.recommend(users, user_items, N=1)
    folded_ids, folded_scores = model.recommend(users, user_items, N=1, recalculate_user=True)
    np.testing.assert_array_equal(folded_ids, ids)
    np.testing.assert_allclose(folded_scores, scores, rtol=0, atol=5e-4)
    for user in (0, 17, 49):
        single_ids, single_scores = model.recommend(0, user_items[user], N=1,
                                                    recalculate_user=True)
        assert single_ids[0] == ids[user, 0]
        assert abs(single_scores[0] - scores[user, 0]) < 5e-4


def test_candidates_with_liked_items_come_back_whole_on_the_checker_board():
    """implicit's rank-items check: with filter_already_liked_items the liked candidates
    (2, 4, 6 for user 0) are listed last."""
    user_items = checker_board(50)
    model = ALSSolver(factors=3, random_state=0).fit(user_items, show_progress=False)
    ids, scores = model.recommend(0, user_items[0], items=[1, 2, 3, 4, 5, 6], N=20)
    assert len(ids) == 6 and set(ids[3:]) == {2, 4, 6} and np.isneginf(scores[3:]).all()
    ids, _ = model.recommend(np.arange(50), user_items, items=np.arange(10) * 3)
    assert all(set(row) == set(np.arange(10) * 3) for row in ids)
    with pytest.raises(IndexError):
        model.recommend(0, user_items[0], items=[1, 2, 51])


@pytest.mark.parametrize("loss", ["rg2", "ials"])
def test_similar_lists_start_with_the_query_itself_despite_rounding(loss):
    """On a large checker board with 3 factors all items of one parity are nearly
    parallel: rounding alone would rank a neighbour above an item's cosine with itself
    (implicit's batch checks)."""
    user_items = checker_board(256)
    model = ALSSolver(loss=loss, factors=3, random_state=23).fit(user_items,
                                                                 show_progress=False)
    queries = np.arange(50)
    for method in (model.similar_items, model.similar_users):
        ids, scores = method(queries, N=10)
        assert ids[:, 0].tolist() == queries.tolist()
        np.testing.assert_array_equal(scores[:, 0], 1.0)
        assert np.all(ids % 2 == queries[:, None] % 2)
        assert np.all(np.diff(scores[:, 1:], axis=1) <= 0)
    # a query filtered out, or not among the candidates, is not listed
    ids, _ = model.similar_items(4, N=5, filter_items=[4])
    assert 4 not in ids.tolist()
    ids, _ = model.similar_items(4, N=3, items=[6, 8, 10])
    assert sorted(ids.tolist()) == [6, 8, 10]
    ids, scores = model.similar_users(6, N=3, users=[6, 8, 10])
    assert ids[0] == 6 and scores[0] == 1.0
    # also when the items' factors are folded in again (implicit's batch check)
    ids, _ = model.similar_items(queries, N=10, recalculate_item=True,
                                 item_users=user_items.T.tocsr()[queries])
    assert ids[:, 0].tolist() == queries.tolist()
    assert np.all(ids % 2 == queries[:, None] % 2)


def test_a_zero_d_array_id_is_one_query(rng):
    user_items = random_interactions(rng)
    model = fit(user_items, factors=3)
    for method in (model.recommend, model.similar_items, model.similar_users):
        one, batch = method(np.array(2), N=4), method(2, N=4)
        assert one[0].ndim == 1
        np.testing.assert_array_equal(one[0], batch[0])
    rows = user_items[[2]]
    assert model.recalculate_user(np.array(2), rows).ndim == 1


def test_folding_in_values_a_fit_refuses_is_refused(rng):
    user_items = random_interactions(rng)
    model = fit(user_items, factors=3)
    with pytest.raises(ValueError, match="user_items holds values only up to"):
        model.recalculate_user([0, 1], user_items[[0, 1]] * 1e-300)
    with pytest.raises(ValueError, match="user_items holds values only up to"):
        model.recommend([0, 1], user_items[[0, 1]] * 1e-300, recalculate_user=True)


@pytest.mark.parametrize("alpha", [0.01, 0.3])
def test_cg_fits_rank_health_as_well_as_exact_solves(alpha):
    """The CG kernel (four pairs at a time, prefetch) inside whole fits on the embedded
    Health split: validation NDCG@20 within 1% of the exact Cholesky solves'."""
    from rgals.data import validation_split
    from rgals.datasets import load_default
    from rgals.metrics import ranking_metrics
    train, _ = load_default()
    fit_part, validation = validation_split(train, ratio=0.1, seed=0)
    scores = {}
    for solver in ("cg", "cholesky"):
        model = ALSSolver(alpha=alpha, regularization=0.01, solver=solver, iterations=8,
                          random_state=0).fit(fit_part, show_progress=False)
        scores[solver] = ranking_metrics(model.user_factors_, model.item_factors_,
                                         validation, fit_part, K=20,
                                         metrics=("ndcg",))["ndcg@20"]
    assert scores["cg"] == pytest.approx(scores["cholesky"], rel=0.01)
    popularity = np.asarray(fit_part.sum(axis=0)).reshape(-1, 1)
    assert scores["cg"] > 1.2 * ranking_metrics(np.ones((train.shape[0], 1)), popularity,
                                                validation, fit_part, K=20,
                                                metrics=("ndcg",))["ndcg@20"]


def test_a_huge_alpha_is_blamed_rather_than_the_data(rng):
    user_items = random_interactions(rng)
    with pytest.raises(ValueError, match=r"alpha=1e\+38 is too large for float32 factors"):
        fit(user_items, loss="ials", alpha=1e38, iterations=1, dtype=np.float32)


def test_a_fit_that_ran_every_sweep_says_so(rng):
    model = fit(random_interactions(rng), factors=3, iterations=3, tol=0.0)
    assert model.monitor_.stop_reason == "ran every sweep (3)"


def test_a_fit_on_prepared_inputs_equals_a_fit_on_the_matrix(rng):
    user_items = random_interactions(rng, n_users=40, n_items=25)
    validation = random_interactions(rng, n_users=40, n_items=25, density=0.05)
    params = dict(factors=4, iterations=4, random_state=0, regularization=0.05,
                  eval_every=1)
    direct = ALSSolver(**params).fit(user_items, show_progress=False, validation=validation)
    inputs = FitInputs.checked(user_items, validation, "rg2")
    for _ in range(2):  # the inputs serve several fits (their prepared data is kept)
        prepared = ALSSolver(**params).fit(inputs, show_progress=False)
        np.testing.assert_array_equal(prepared.user_factors_, direct.user_factors_)
        np.testing.assert_array_equal(prepared.item_factors_, direct.item_factors_)
    with pytest.raises(ValueError, match="FitInputs hold the validation matrix already"):
        ALSSolver(**params).fit(inputs, validation=validation)


def test_prepared_inputs_with_negative_values_are_checked_again_for_a_loss_without(rng):
    user_items = random_interactions(rng, negative=True)
    inputs = FitInputs.checked(user_items, loss="ials")
    ALSSolver(loss="ials", factors=3, iterations=2).fit(inputs, show_progress=False)
    with pytest.raises(ValueError, match="negative"):
        ALSSolver(loss="rg2", factors=3, iterations=2).fit(inputs, show_progress=False)


def test_checked_params_refuses_a_bad_parameter_before_any_data():
    assert ALSSolver(factors=8).checked_params()["factors"] == 8
    with pytest.raises(ValueError, match="factors"):
        ALSSolver(factors=0).checked_params()
