"""explain, user_norms / item_norms, recommend_all and save_recommendations."""

import numpy as np
import pytest
import scipy.sparse as sp

import rgals
from conftest import random_interactions
from rgals import ALSSolver
from rgals.backend import to_host


def test_implicits_explain_test_passes():
    """implicit 0.7.3 tests/als_test.py test_explain, with its iALS setting."""
    counts = sp.csr_matrix([[1, 1, 0, 1, 0, 0], [0, 1, 1, 1, 0, 0], [1, 4, 1, 0, 7, 0],
                            [1, 1, 0, 0, 0, 0], [9, 0, 4, 1, 0, 1], [0, 1, 0, 0, 0, 1],
                            [0, 0, 2, 0, 1, 1]], dtype=np.float32)
    user_items = counts.T.tocsr()
    model = ALSSolver(factors=4, loss="ials", regularization=20, alpha=2.0,
                      solver="cholesky", iterations=100, random_state=23)
    model.fit(user_items, show_progress=False)
    userid = 0
    ids, scores = model.recommend(userid, user_items[userid], N=10)
    recalculated_ids, recalculated_scores = model.recommend(
        userid, user_items[userid], N=10, recalculate_user=True)
    for item1, score1, item2, score2 in zip(ids, scores, recalculated_ids,
                                            recalculated_scores):
        assert item1 == item2 and score1 == pytest.approx(score2, abs=1e-4)
    top, score = recalculated_ids[0], recalculated_scores[0]
    explained, contributions, weights = model.explain(userid, user_items, itemid=top)
    shares = [share for _, share in contributions]
    assert explained == pytest.approx(score, abs=1e-4)
    assert sum(shares) == pytest.approx(score, abs=1e-4)
    assert shares == sorted(shares, reverse=True)
    assert sorted(item for item, _ in contributions) == [0, 2, 3, 4]
    again, top_two, _ = model.explain(userid, user_items, itemid=top, user_weights=weights,
                                      N=2)
    assert again == pytest.approx(score, abs=1e-4) and top_two == contributions[:2]


@pytest.mark.parametrize("loss", ["rg2", "rgx", "ials"])
def test_explained_shares_add_up_to_the_folded_in_score(rng, loss, backend_name):
    user_items = random_interactions(rng, n_users=30, n_items=20, density=0.3)
    model = ALSSolver(factors=5, loss=loss, regularization=0.05, iterations=4,
                      dtype=np.float64, random_state=int(rng.integers(1000)),
                      backend=backend_name)
    model.fit(user_items, show_progress=False)
    row = random_interactions(rng, n_users=1, n_items=20, empty_user=False)
    folded, factors = to_host(model.recalculate_user(0, row)), to_host(model.item_factors_)
    for item in rng.choice(20, 4, replace=False):
        score, contributions, _ = model.explain(0, row, item, N=50)
        assert score == pytest.approx(folded @ factors[item], rel=1e-9, abs=1e-12)
        assert sum(share for _, share in contributions) == pytest.approx(score, rel=1e-9,
                                                                         abs=1e-12)
        items = [itemid for itemid, _ in contributions]
        # the user's items, then the loss's term over every item (not for iALS)
        assert sorted(items[:row.nnz]) == sorted(row.indices)
        assert items[row.nnz:] == ([] if loss == "ials" else [-1])
    # the training row (None), the user's row and the matrix of every user agree
    user = int(np.flatnonzero(np.diff(user_items.indptr))[0])
    by_row = model.explain(user, user_items[user], 3)
    assert model.explain(user, None, 3)[:2] == by_row[:2]
    assert model.explain(user, user_items, 3)[:2] == by_row[:2]


def test_bad_explanations_are_clear_errors(rng):
    user_items = random_interactions(rng)
    model = ALSSolver(factors=3, iterations=2, random_state=0).fit(user_items,
                                                                   show_progress=False)
    n_users, n_items = user_items.shape
    with pytest.raises(IndexError, match="itemid .* out of range"):
        model.explain(0, None, n_items)
    with pytest.raises(ValueError, match="userid must be one id"):
        model.explain([0, 1], None, 0)
    with pytest.raises(IndexError, match="pass user_items"):
        model.explain(n_users, None, 0)
    with pytest.raises(IndexError, match="user_items has 23 rows"):
        model.explain(40, user_items, 0)
    with pytest.raises(rgals.NotFittedError):
        ALSSolver().explain(0, None, 0)


def test_norms_follow_the_factors(rng):
    user_items = random_interactions(rng)
    model = ALSSolver(factors=3, iterations=2, random_state=0).fit(user_items,
                                                                   show_progress=False)
    np.testing.assert_allclose(model.user_norms, np.linalg.norm(model.user_factors_, axis=1),
                               rtol=1e-6)
    np.testing.assert_allclose(model.item_norms, np.linalg.norm(model.item_factors_, axis=1),
                               rtol=1e-6)
    assert model.item_norms is model.item_norms  # computed once
    model.partial_fit_users([30], random_interactions(rng, n_users=1, n_items=17,
                                                      empty_user=False))
    assert model.user_norms.shape == (31,)
    assert model.user_norms[30] == pytest.approx(np.linalg.norm(model.user_factors_[30]))


@pytest.fixture
def served(rng):
    user_items = random_interactions(rng, n_users=50, n_items=30)
    return ALSSolver(factors=4, iterations=3, random_state=1).fit(user_items,
                                                                  show_progress=False)


def test_recommend_all_gives_every_user_once_in_blocks(served):
    blocks = list(served.recommend_all(N=4, batch_size=16, show_progress=False))
    assert [len(users) for users, _, _ in blocks] == [16, 16, 16, 2]
    users = np.concatenate([users for users, _, _ in blocks])
    np.testing.assert_array_equal(users, np.arange(50))
    ids, scores = served.recommend(np.arange(50), N=4)
    np.testing.assert_array_equal(np.concatenate([block[1] for block in blocks]), ids)
    np.testing.assert_array_equal(np.concatenate([block[2] for block in blocks]), scores)
    # without stored rows, the matrix of every user filters
    served_bare = ALSSolver(factors=4).set_params(**served.get_params())
    for name in ("user_factors_", "item_factors_", "previous_item_factors_", "loss_",
                 "interaction_totals_"):
        setattr(served_bare, name, getattr(served, name))
    served_bare.user_items_ = None
    bare = list(served_bare.recommend_all(N=4, user_items=served.user_items_,
                                          show_progress=False))
    np.testing.assert_array_equal(bare[0][1], ids)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        next(served.recommend_all(batch_size=0))
    with pytest.raises(ValueError, match="has shape"):
        next(served.recommend_all(user_items=served.user_items_[:3]))


def test_save_recommendations_streams_every_list_to_a_file(served, tmp_path):
    path = tmp_path / "lists.tsv"
    served.save_recommendations(path, N=3, batch_size=7, show_progress=False,
                                user_ids=[f"u{k}" for k in range(50)],
                                item_ids=np.arange(30) + 1000)
    lines = path.read_text().splitlines()
    assert lines[0] == "user\trank\titem\tscore" and len(lines) == 1 + 50 * 3
    ids, scores = served.recommend(np.arange(50), N=3)
    for line, (user, rank) in zip(lines[1:], np.ndindex(50, 3)):
        assert line.split("\t")[:3] == [f"u{user}", str(rank + 1), str(ids[user, rank] + 1000)]
        assert float(line.split("\t")[3]) == pytest.approx(scores[user, rank], rel=1e-5)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        served.save_recommendations(path)
    served.save_recommendations(path, N=1, overwrite=True, show_progress=False)
    assert len(path.read_text().splitlines()) == 51
    assert [p.name for p in tmp_path.iterdir()] == ["lists.tsv"]  # nothing left behind
    with pytest.raises(ValueError, match="id maps"):
        served.save_recommendations(tmp_path / "other.tsv", user_ids=[1, 2])
    # fewer items than N left for a user: the padding is not written
    served.save_recommendations(tmp_path / "few.tsv", N=30, show_progress=False)
    counts = np.bincount([int(line.split("\t")[0]) for line in
                          (tmp_path / "few.tsv").read_text().splitlines()[1:]], minlength=50)
    np.testing.assert_array_equal(counts, 30 - np.diff(served.user_items_.indptr))
