"""rgals.ann: the approximate index gives the exact lists with exhaustive settings, takes
recommend's arguments, and refuses to serve stale item factors."""

import threading

import numpy as np
import pytest
import scipy.sparse as sp

import rgals
from conftest import random_interactions
from rgals import ALSSolver, ann

pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(20261203)
    user_items = random_interactions(rng, n_users=120, n_items=90, density=0.08)
    return ALSSolver(factors=6, iterations=4, random_state=0).fit(user_items,
                                                                  show_progress=False)


EXHAUSTIVE = [("flat", {}), ("ivf", dict(nlist=4, nprobe=4)),
              ("hnsw", dict(hnsw_m=48, ef_search=90))]


def assert_same(got, expected):
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-6)


@pytest.mark.parametrize("method, settings", EXHAUSTIVE, ids=[m for m, _ in EXHAUSTIVE])
def test_exhaustive_settings_give_the_exact_lists(model, method, settings):
    index = model.approximate_index(method, **settings)
    users = np.arange(model.user_factors_.shape[0])
    rows = model.user_items_
    cold = int(np.flatnonzero(np.diff(rows.indptr) == 0)[0])  # the popularity fallback
    for args, kwargs in [((users,), dict(N=10)), ((7,), dict(N=5)), ((cold,), dict(N=5)),
                         ((users,), dict(N=10, filter_items=[0, 3, 5])),
                         ((users,), dict(N=10, filter_already_liked_items=False)),
                         ((users[:20], rows[:20]), dict(N=8)),
                         ((users[:20], rows[20:40]), dict(N=8, recalculate_user=True)),
                         ((users[:5],), dict(N=4, items=[1, 2, 3, 4, 5, 6])),
                         ((users[:5],), dict(N=200))]:  # fewer items left than N: padded
        assert_same(index.recommend(*args, **kwargs), model.recommend(*args, **kwargs))


def test_default_settings_find_most_of_the_exact_lists(model):
    users = np.arange(model.user_factors_.shape[0])
    exact, _ = model.recommend(users, N=10)
    for method in ("hnsw", "ivf"):
        found, scores = model.approximate_index(method).recommend(users, N=10)
        assert found.shape == exact.shape and found.dtype == exact.dtype
        recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(found, exact)])
        assert recall > 0.5, method
        # every listed item is scored exactly and none is a seen one
        listed = found >= 0
        np.testing.assert_allclose(
            scores[listed], np.einsum("ud,ud->u", np.repeat(model.user_factors_, 10,
                                                            axis=0)[listed.ravel()],
                                      model.item_factors_[found[listed]]), rtol=1e-5)
        assert not model.user_items_[np.nonzero(listed)[0], found[listed]].any()


def test_an_index_refuses_item_factors_changed_since_it_was_built(model):
    mine = ALSSolver().set_params(**model.get_params())
    for name in ("user_factors_", "item_factors_", "previous_item_factors_", "user_items_",
                 "interaction_totals_", "loss_"):
        setattr(mine, name, getattr(model, name))
    index = mine.approximate_index("flat")
    mine.partial_fit_users([0], model.user_items_[[1]])  # users: still served
    assert_same(index.recommend(0, N=5), mine.recommend(0, N=5))
    mine.partial_fit_items([0], model.user_items_.T.tocsr()[[1]])
    with pytest.raises(ValueError, match="build it again"):
        index.recommend(0)


def test_bad_settings_and_a_missing_faiss_are_clear_errors(model, monkeypatch):
    with pytest.raises(ValueError, match="unknown method 'annoy'"):
        model.approximate_index("annoy")
    with pytest.raises(ValueError, match="nlist=1000 is more than the 90 items"):
        model.approximate_index("ivf", nlist=1000)
    with pytest.raises(ValueError, match="hnsw_m must be an integer >= 2"):
        model.approximate_index("hnsw", hnsw_m=1)
    with pytest.raises(rgals.NotFittedError):
        ALSSolver().approximate_index()

    def missing():
        raise ImportError("an approximate index needs faiss: pip install 'rgals[ann]'")

    monkeypatch.setattr(ann, "require_faiss", missing)
    with pytest.raises(ImportError, match=r"rgals\[ann\]"):
        model.approximate_index()


def test_threads_serving_from_one_index_get_the_same_lists(model):
    index = model.approximate_index("hnsw", ef_search=64)
    users = np.arange(model.user_factors_.shape[0])
    expected = index.recommend(users, N=10)
    results, errors = [], []

    def serve():
        try:
            for _ in range(5):
                results.append(index.recommend(users, N=10))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=serve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 20
    for result in results:
        assert_same(result, expected)


def test_rows_with_many_seen_items_still_get_n_unseen_ones():
    rng = np.random.default_rng(5)
    dense = (rng.random((30, 60)) < 0.1).astype(float)
    dense[0, :50] = 1.0  # a user who has seen 50 of the 60 items
    model = ALSSolver(factors=4, iterations=3, random_state=0).fit(sp.csr_matrix(dense),
                                                                   show_progress=False)
    ids, _ = model.approximate_index("hnsw").recommend(0, N=10)
    unseen = np.flatnonzero(dense[0] == 0)
    assert sorted(ids[ids >= 0]) == list(unseen) and (ids < 0).sum() == 10 - unseen.size
    assert_same((ids, _), model.recommend(0, N=10))


def test_rows_the_search_leaves_short_are_ranked_exactly(model, monkeypatch):
    index = model.approximate_index("ivf")
    users = np.arange(40)
    monkeypatch.setattr(index, "_search",
                        lambda queries, k: np.full((queries.shape[0], k), -1, np.int64))
    for kwargs in (dict(N=10), dict(N=10, filter_items=[0, 1]), dict(N=500)):
        assert_same(index.recommend(users, **kwargs), model.recommend(users, **kwargs))


def test_blocks_by_need_cover_every_row_once_with_close_needs(rng):
    need = np.concatenate([rng.integers(20, 40, 9000), rng.integers(20, 3000, 500), [0, 0]])
    blocks = list(ann._blocks_by_need(need))
    rows = np.concatenate(blocks)
    assert np.array_equal(np.sort(rows), np.arange(need.size))
    for block in blocks:
        assert 1 <= block.size <= ann.BATCH
        assert need[block].max() <= max(2 * need[block].min(), need[block].min())


def test_a_float64_model_gets_float64_scores_as_from_recommend(rng):
    user_items = random_interactions(rng, n_users=40, n_items=30, density=0.2)
    model = ALSSolver(factors=4, iterations=3, dtype=np.float64, random_state=0).fit(
        user_items, show_progress=False)
    got = model.approximate_index("flat").recommend(np.arange(40), N=5)
    expected = model.recommend(np.arange(40), N=5)
    assert got[1].dtype == expected[1].dtype == np.float64
    assert_same(got, expected)
