"""recommend, similar_items/users and fold-in against brute force on the dense scores,
on every backend."""

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import random_interactions
from rgals import ALSSolver
from rgals.backend import to_host as host
from rgals.ranking import top_n


@pytest.fixture
def model(rng, backend_name):
    user_items = random_interactions(rng, n_users=30, n_items=25, density=0.3)
    return ALSSolver(factors=4, alpha=0.5, iterations=3, dtype=np.float64,
                     random_state=0, backend=backend_name).fit(user_items,
                                                               show_progress=False)


def brute_top(scores, N):
    order = np.argsort(-scores, kind="stable")
    order = order[np.isfinite(scores[order])][:N]
    return order, scores[order]


def test_recommend_matches_brute_force_with_training_items_filtered(model):
    users = np.arange(host(model.user_factors_).shape[0])
    ids, scores = model.recommend(users, N=6)
    liked = model.user_items_.toarray() != 0
    all_scores = host(model.user_factors_) @ host(model.item_factors_).T
    popularity = liked.sum(axis=0).astype(float)
    for user in users:
        expected = np.where(liked[user], -np.inf, all_scores[user])
        top, top_scores = brute_top(expected, 6)
        if not liked[user].any():  # zero factors: the most popular items, score 0
            top, top_scores = brute_top(popularity, 6)[0], np.zeros(6)
        np.testing.assert_array_equal(ids[user, :len(top)], top)
        np.testing.assert_allclose(scores[user, :len(top)], top_scores)
        assert not liked[user, ids[user][ids[user] >= 0]].any()
    single_ids, single_scores = model.recommend(3, N=6)
    np.testing.assert_array_equal(single_ids, ids[3])


def test_recommend_without_filter_with_candidates_and_filters(model):
    all_scores = host(model.user_factors_)[5] @ host(model.item_factors_).T
    ids, _ = model.recommend(5, N=4, filter_already_liked_items=False)
    np.testing.assert_array_equal(ids, np.argsort(-all_scores)[:4])
    candidates = np.array([3, 9, 11, 20, 2])
    ids, scores = model.recommend(5, N=3, filter_already_liked_items=False, items=candidates)
    np.testing.assert_array_equal(ids, candidates[np.argsort(-all_scores[candidates])[:3]])
    banned = np.argsort(-all_scores)[:2]
    ids, _ = model.recommend(5, N=4, filter_already_liked_items=False, filter_items=banned)
    assert not np.isin(ids, banned).any()


def test_recommend_pads_when_too_few_items_are_left(model):
    liked = model.user_items_[0].indices
    ids, scores = model.recommend([0], N=30)
    assert ids.shape == (1, 25)  # min(N, items)
    assert (ids[0] == -1).sum() == len(liked) and np.isneginf(scores[0][ids[0] == -1]).all()
    assert set(ids[0][ids[0] >= 0]) == set(range(25)) - set(liked)


def test_recommend_ranks_liked_candidates_last(model):
    liked = model.user_items_[0].indices
    others = [i for i in range(25) if i not in liked]
    candidates = np.array([liked[1], others[0], liked[0], others[1], others[2]])
    scores_all = host(model.item_factors_) @ host(model.user_factors_)[0]
    ids, scores = model.recommend([0], N=10, items=candidates)
    unliked = sorted(others[:3], key=lambda item: -scores_all[item])
    # every candidate comes back: the liked ones last, score -inf, lower id first
    assert ids.tolist() == [unliked + sorted(liked[:2].tolist())]
    np.testing.assert_allclose(scores[0, :3], scores_all[unliked], rtol=1e-9)
    assert np.isneginf(scores[0, 3:]).all()
    ids, scores = model.recommend(0, N=4, items=candidates)  # N cuts the list as usual
    assert ids.tolist() == unliked + [min(liked[:2])]
    ids, _ = model.recommend(0, N=5, items=candidates, filter_already_liked_items=False)
    assert ids.tolist() == sorted(candidates.tolist(), key=lambda item: -scores_all[item])


def test_similar_items_and_users_are_cosine_neighbours(model):
    for factors, method in ((host(model.item_factors_), model.similar_items),
                            (host(model.user_factors_), model.similar_users)):
        norms = np.linalg.norm(factors, axis=1, keepdims=True)
        unit = np.divide(factors, norms, out=np.zeros_like(factors), where=norms > 0)
        ids, scores = method(2, N=5)
        expected = np.argsort(-(unit @ unit[2]))[:5]
        np.testing.assert_array_equal(ids, expected)
        assert ids[0] == 2 and scores[0] == pytest.approx(1.0)
        batch_ids, _ = method([2, 4], N=5)
        np.testing.assert_array_equal(batch_ids[0], ids)


@pytest.mark.parametrize("loss,alpha", [("rg2", 0.5), ("rgx", 0.3), ("ials", 2.0)])
def test_recalculate_user_is_the_exact_user_step(rng, loss, alpha, backend_name):
    user_items = random_interactions(rng, n_users=30, n_items=25, density=0.3)
    model = ALSSolver(factors=4, loss=loss, alpha=alpha, iterations=3, dtype=np.float64,
                      regularization=0.1, random_state=0, backend=backend_name).fit(
        user_items, show_progress=False)
    new_user = user_items[7]
    folded = host(model.recalculate_user(0, new_user))
    # closed form of design.md 1.3 written out densely, against the items the fit's last
    # user step saw
    Q, c = host(model.previous_item_factors_), new_user.toarray().ravel()
    observed = c != 0
    if loss == "ials":
        weight = np.where(observed, np.abs(alpha * c), 1.0)
        A = (Q * weight[:, None]).T @ Q + 0.1 * np.eye(4)
        b = Q.T @ np.where(alpha * c > 0, alpha * c, 0.0)
    else:
        n_items = Q.shape[0]
        w = c.sum() / (2 * n_items)
        G = Q.T @ Q - (np.outer(Q.sum(0), Q.sum(0)) / n_items if loss == "rgx" else 0)
        A = w * G + alpha * (Q * c[:, None]).T @ Q + \
            0.1 * (c.sum() / 2 + alpha * n_items + 1) * np.eye(4)
        b = -w * Q.sum(0) + (alpha + 0.5) * Q.T @ c
    np.testing.assert_allclose(folded, np.linalg.solve(A, b), rtol=1e-9)
    ids, _ = model.recommend(0, new_user, recalculate_user=True, N=3)
    expected = np.argsort(-np.where(observed, -np.inf, host(model.item_factors_) @ folded))[:3]
    np.testing.assert_array_equal(ids, expected)


@pytest.mark.parametrize("loss", ["rg2", "rgx", "ials"])
def test_refolding_gives_back_the_fitted_factors(rng, backend_name, loss):
    user_items = random_interactions(rng, n_users=30, n_items=25, density=0.3)
    model = ALSSolver(factors=4, loss=loss, alpha=0.5, iterations=3, dtype=np.float64,
                      solver="cholesky", random_state=0, backend=backend_name).fit(
        user_items, show_progress=False)
    # the fit ended on an exact item step, so refolding an item changes nothing
    np.testing.assert_allclose(host(model.recalculate_item(4, user_items.T.tocsr()[4])),
                               host(model.item_factors_)[4], rtol=1e-9)
    # and its users were solved exactly against the items before that step
    users = np.array([0, 7, 29])
    np.testing.assert_allclose(host(model.recalculate_user(users, user_items[users])),
                               host(model.user_factors_)[users], rtol=1e-9)
    previous = host(model.previous_item_factors_)
    assert np.abs(previous - host(model.item_factors_)).max() > 1e-3  # not the same items


def test_many_queries_are_ranked_exactly_with_the_norm_bound(rng):
    """From 1024 queries top_lists ranks the targets by decreasing norm and stops each
    query early: the lists equal brute force, masks, removed ids and ties included."""
    from rgals import ranking
    import scipy.sparse as sp
    n_queries, n_targets, d, depth = 1500, 4000, 5, 7
    queries = rng.standard_normal((n_queries, d))
    queries[3] = 0.0  # every score 0: ranked by id
    targets = rng.standard_normal((n_targets, d)) * rng.lognormal(0, 0.5, (n_targets, 1))
    targets[[10, 500, 3650]] = targets[600]  # equal scores: the lower id first
    targets[20] = 0.0
    mask = sp.random(n_queries, n_targets, density=0.1, random_state=1, format="csr")
    removed = np.sort(rng.choice(n_targets, 30, replace=False))
    assert n_queries >= ranking._PRUNE_QUERIES
    scores, ids = ranking.top_lists(queries, targets, depth, mask=mask, removed=removed)
    dense = queries @ targets.T
    dense[mask.nonzero()] = -np.inf
    dense[:, removed] = -np.inf
    for row in range(n_queries):
        expected = np.lexsort((np.arange(n_targets), -dense[row]))[:depth]
        np.testing.assert_array_equal(ids[row], expected, err_msg=f"query {row}")
        np.testing.assert_array_equal(scores[row], dense[row, expected])
    assert ids[3].tolist() == [i for i in range(n_targets) if i not in removed
                               and i not in mask[3].indices][:depth]


def test_merge_top_ranks_equal_scores_by_id_in_any_tile_order():
    from rgals.kernels import cpu
    best, ids = np.full((1, 3), -np.inf), np.full((1, 3), -1)
    none = np.zeros(1, np.int64)
    for offset, tile_ids, values in ((0, [9, 8], [1.0, 2.0]), (2, [3, 7], [1.0, 2.0]),
                                     (4, [5, 1], [-np.inf, 1.0])):
        cpu.merge_top(np.array([values]), offset, np.array(tile_ids, np.int64), none.copy(),
                      none.copy(), np.empty(0, np.int64), best, ids)
    assert ids.tolist() == [[7, 8, 1]] and best.tolist() == [[2.0, 2.0, 1.0]]


def test_a_query_gets_the_same_list_alone_and_in_a_batch():
    """Near-ties decided by how BLAS summed a batch (implicit's batch check): the list
    is chosen on exact scores, among more targets than asked, and from every target
    where more near-ties crowd the boundary than that margin holds."""
    rng = np.random.default_rng(4)
    base = rng.standard_normal(16)
    # 40 targets within 1e-7 of each other (30 of them more than the margin) and 20 far
    targets = np.vstack([base + 1e-7 * rng.standard_normal((40, 16)),
                         rng.standard_normal((20, 16))]).astype(np.float32)
    queries = (base + 0.01 * rng.standard_normal((60, 16))).astype(np.float32)
    for N in (1, 5, 12):
        ids, scores = top_n(queries, targets, N)
        for row in range(len(queries)):
            alone_ids, alone_scores = top_n(queries[row:row + 1], targets, N)
            np.testing.assert_array_equal(alone_ids[0], ids[row])
            np.testing.assert_array_equal(alone_scores[0], scores[row])
        exact = queries.astype(np.float64) @ targets.astype(np.float64).T
        best = np.lexsort((np.broadcast_to(np.arange(60), exact.shape), -exact))[:, :N]
        np.testing.assert_array_equal(ids, best)


def test_exact_ties_beyond_the_margin_rank_the_lower_ids_first():
    targets = np.ones((30, 4), dtype=np.float32)  # 30 equal targets
    ids, scores = top_n(np.ones((3, 4), dtype=np.float32), targets, 5,
                        exclude=sp.csr_matrix(([1.0], ([1], [0])), shape=(3, 30)))
    assert ids.tolist() == [[0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [0, 1, 2, 3, 4]]
    np.testing.assert_array_equal(scores, 4.0)
