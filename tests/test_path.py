"""rgals.path: the default RG2/RGx regularization chosen on a warm-started path."""

import numpy as np
import pytest
import scipy.sparse as sp

import rgals
from rgals import path
from rgals.data import synthetic, validation_split
from rgals.losses import RG2
from rgals.metrics import ranking_metrics
from rgals.prepared import prepare
from rgals.backend import get_backend


def communities(n_users, n_items, groups, per_user, local, seed):
    """Each user and item in one of `groups` communities; a user's pair is an item of
    their own community with probability `local`, else an item drawn by popularity."""
    rng = np.random.default_rng(seed)
    size = n_items // groups
    members = rng.permutation(n_items)[:groups * size].reshape(groups, size)
    user_group = rng.integers(groups, size=n_users)
    rows = np.repeat(np.arange(n_users), per_user)
    popularity = 1.0 / (rng.permutation(n_items) + 1.0) ** 0.8
    popular = rng.choice(n_items, size=rows.size, p=popularity / popularity.sum())
    own = members[user_group[rows], rng.integers(size, size=rows.size)]
    items = np.where(rng.random(rows.size) < local, own, popular)
    matrix = sp.csr_matrix((np.ones(rows.size), (rows, items)), shape=(n_users, n_items))
    matrix.data[:] = 1.0
    return matrix


def validation_ndcg(model, fit_part, validation):
    return ranking_metrics(model.user_factors_, model.item_factors_, validation, fit_part,
                           K=20, metrics=("ndcg",))["ndcg@20"]


def fit(matrix, **params):
    settings = dict(factors=32, num_threads=1, random_state=0)
    settings.update(params)
    return rgals.ALSSolver(**settings).fit(matrix, show_progress=False)


def test_the_path_lowers_lam_where_local_structure_wants_it():
    # 300 communities of 10 items and 32 factors: the rule's lam shrinks most of them away
    fit_part, validation = validation_split(communities(3000, 3000, 300, 20, 0.8, seed=3),
                                            0.1, seed=0)
    model = fit(fit_part)
    stages = model.regularization_path_
    rule = RG2().resolve(fit_part).regularization
    assert stages[0].regularization == rule and stages[0].sweeps == path.FIRST_SWEEPS
    assert model.loss_.regularization < rule / 2
    chosen = max(stages, key=lambda stage: stage.holdout_ndcg)
    assert model.loss_.regularization == chosen.regularization
    at_rule = fit(fit_part, regularization=rule)
    assert at_rule.regularization_path_ is None
    assert validation_ndcg(model, fit_part, validation) > \
        1.05 * validation_ndcg(at_rule, fit_part, validation)


def test_the_path_raises_lam_where_structure_is_weak():
    # popularity and noise only: the first step down ranks the holdout worse, one up better
    fit_part, validation = validation_split(communities(3000, 3000, 300, 20, 0.0, seed=3),
                                            0.1, seed=0)
    model = fit(fit_part)
    first, down, up = model.regularization_path_
    rule = RG2().resolve(fit_part).regularization
    assert first.regularization == rule and down.regularization == rule / path.STEP
    assert down.holdout_ndcg < first.holdout_ndcg < up.holdout_ndcg
    assert up.regularization == pytest.approx(rule * path.UP_STEP)
    assert model.loss_.regularization == up.regularization and up.sweeps == down.sweeps + 3
    at_rule = fit(fit_part, regularization=rule)
    assert validation_ndcg(model, fit_part, validation) > \
        1.05 * validation_ndcg(at_rule, fit_part, validation)


def test_a_step_up_that_loses_changes_nothing(monkeypatch):
    # the embedded Health split: the rule's lam beats a third and twice it on the holdout
    from rgals.datasets import load_default

    train, _ = load_default()
    model = fit(train)
    first, down, up = model.regularization_path_
    assert up.regularization > first.regularization > down.regularization
    assert up.holdout_ndcg < first.holdout_ndcg and up.sweeps == down.sweeps
    assert model.loss_.regularization == first.regularization
    monkeypatch.setattr(path, "UP_STEP", 1.0)  # the way up closed: the path of before
    before = fit(train)
    assert len(before.regularization_path_) == 2
    np.testing.assert_array_equal(model.user_factors_, before.user_factors_)
    np.testing.assert_array_equal(model.item_factors_, before.item_factors_)


def test_the_way_up_stops_below_the_collapse(monkeypatch):
    fit_part, _ = validation_split(communities(3000, 3000, 300, 20, 0.0, seed=3), 0.1, seed=0)
    rule = RG2().resolve(fit_part).regularization
    ceiling = RG2().resolve(fit_part).collapse(fit_part, rgals.prepared.InteractionTotals.of(
        fit_part))
    # a cap between the rule's lam and twice it: the step up stops at the cap, measured
    # on the path's data (less the holdout: a little lower than on all of it)
    monkeypatch.setattr(path, "UP_CAP", 1.5 * rule / ceiling)
    stages = fit(fit_part).regularization_path_
    assert 1.1 * rule < stages[2].regularization <= 1.5 * rule
    # no room above the rule's lam: no step up
    monkeypatch.setattr(path, "UP_CAP", rule / ceiling)
    assert len(fit(fit_part).regularization_path_) == 2


def test_a_step_between_finds_a_narrow_peak(monkeypatch):
    # sparse planted data: the holdout peaks between lam / 3 and lam, below the cliff
    fit_part, validation = validation_split(
        synthetic(2000, 1000, factors=8, mean_activity=8, seed=1), 0.1, seed=0)
    model = fit(fit_part, dtype=np.float64)
    first, down, further, between = model.regularization_path_
    rule = first.regularization
    assert down.regularization == rule / path.STEP and down.holdout_ndcg > first.holdout_ndcg
    assert further.holdout_ndcg < first.holdout_ndcg  # the way down ends
    # between down (the best) and its better neighbour, the first stage, from down's factors
    assert between.regularization == pytest.approx(rule / np.sqrt(path.STEP))
    assert between.sweeps == down.sweeps + path.STAGE_SWEEPS
    assert between.holdout_ndcg > down.holdout_ndcg * (1 + path.MIN_GAIN)
    assert model.loss_.regularization == between.regularization
    assert model.monitor_.rows[0]["sweep"] == between.sweeps + 1
    # each stage's wall seconds since the path began, the dropped step's included
    seconds = [stage.seconds for stage in model.regularization_path_]
    assert 0 < seconds[0] and seconds == sorted(seconds)
    monkeypatch.setattr(path, "between_lam", lambda stages, best: None)
    without = fit(fit_part, dtype=np.float64)
    assert without.loss_.regularization == down.regularization
    assert validation_ndcg(model, fit_part, validation) > \
        1.05 * validation_ndcg(without, fit_part, validation)


def test_a_step_between_that_loses_changes_nothing(monkeypatch):
    from rgals.datasets import load_default

    train, _ = load_default()
    monkeypatch.setattr(path, "BETWEEN_WITHIN", 1.0)  # any neighbour is close enough
    model = fit(train, factors=16)
    first, down, up, between = model.regularization_path_
    assert between.regularization == pytest.approx(first.regularization * np.sqrt(
        path.UP_STEP))  # towards the better neighbour, up
    assert between.holdout_ndcg < first.holdout_ndcg * (1 + path.MIN_GAIN)
    assert between.sweeps == down.sweeps  # dropped
    assert model.loss_.regularization == first.regularization
    monkeypatch.setattr(path, "BETWEEN_WITHIN", 0.0)  # no step between: the path of before
    before = fit(train, factors=16)
    assert before.regularization_path_ == model.regularization_path_[:3]
    np.testing.assert_array_equal(model.user_factors_, before.user_factors_)
    np.testing.assert_array_equal(model.item_factors_, before.item_factors_)


@pytest.mark.parametrize("tried, expected", [
    # (lam, holdout NDCG) of the stages; the best is the one at lam 1
    ([(1, 0.20), (1 / 3, 0.195), (1 / 9, 0.15)], np.sqrt(1 / 3)),  # the close one below
    ([(1, 0.20), (1 / 3, 0.10), (2, 0.196)], np.sqrt(2)),  # the better of the two
    ([(1, 0.20), (1 / 3, 0.19), (3, 0.17), (1 / 9, 0.21)], np.sqrt(1 / 3)),  # nearest only
    ([(1, 0.20), (1 / 3, 0.189)], None),  # more than BETWEEN_WITHIN below
    ([(1, 0.20)], None),  # no neighbour
])
def test_the_lam_between_is_the_midpoint_towards_the_better_close_neighbour(tried,
                                                                           expected):
    stages = [path.PathStage(lam, 6, score) for lam, score in tried]
    got = path.between_lam(stages, stages[0])
    assert got == (None if expected is None else pytest.approx(expected))


def test_the_holdout_is_a_sample_of_users_less_their_held_pairs():
    rng = np.random.default_rng(5)
    matrix = synthetic(n_users=4000, n_items=300, factors=4, mean_activity=8, seed=2)
    matrix.data *= 1.0 + rng.random(matrix.nnz)  # values travel with their pairs
    counts = np.diff(matrix.indptr)
    held, users = path.path_holdout(counts, matrix.__getitem__, np.random.default_rng(1))
    fit_part = matrix - held
    assert len(users) == path.HOLDOUT_USERS == len(np.unique(users))
    np.testing.assert_array_equal((fit_part + held - matrix).toarray(), 0.0)
    assert fit_part.multiply(held).nnz == 0  # disjoint
    held_counts = np.diff(held.indptr)
    others = np.setdiff1d(np.arange(matrix.shape[0]), users)
    assert not held_counts[others].any()
    expected = np.clip(np.floor(0.1 * counts[users] + 0.5), 1, counts[users] - 1)
    np.testing.assert_array_equal(held_counts[users], expected)
    again = path.path_holdout(counts, matrix.__getitem__, np.random.default_rng(1))
    assert (again[0] != held).nnz == 0
    other = path.path_holdout(counts, matrix.__getitem__, np.random.default_rng(2))
    assert (other[0] != held).nnz > 0


def test_no_holdout_from_too_few_users():
    rng = np.random.default_rng(0)
    matrix = sp.random(path.MIN_USERS - 1, 40, density=0.3, format="csr", random_state=rng)
    assert path.path_holdout(np.diff(matrix.indptr), matrix.__getitem__, rng) is None
    model = fit(matrix, factors=4)
    assert model.regularization_path_ is None
    assert model.loss_.regularization == RG2().resolve(model.user_items_).regularization


@pytest.mark.parametrize("params", [dict(iterations=10), dict(regularization=0.003),
                                    dict(loss="ials"), dict(loss=RG2(regularization=0.01))])
def test_no_path_when_lam_is_given_or_the_fit_too_short(params):
    matrix = communities(600, 400, 40, 10, 0.8, seed=1)
    model = fit(matrix, factors=8, **params)
    assert model.regularization_path_ is None
    assert len(model.monitor_.rows) == 2 * model.iterations


def test_the_last_sweeps_fit_all_the_data():
    matrix = communities(600, 400, 40, 10, 0.8, seed=1)
    final = path.FINAL_SWEEPS
    model = fit(matrix, factors=8, iterations=path.FIRST_SWEEPS + path.STAGE_SWEEPS + final,
                tol=0.0, dtype=np.float64)
    stages = model.regularization_path_
    # room for one stage after the first: a step down, then one between (from the first)
    assert [stage.sweeps for stage in stages] == [path.FIRST_SWEEPS] + [
        path.FIRST_SWEEPS + path.STAGE_SWEEPS] * (len(stages) - 1)
    # the monitor numbers its sweeps from the fit's first, after the path's
    done = stages[-1].sweeps
    assert [row["sweep"] for row in model.monitor_.rows] == \
        [sweep for sweep in range(done + 1, model.iterations + 1) for _ in "ui"]
    # the monitor's last F is the fitted loss on the whole matrix at the returned factors
    whole = model.loss_.objective(model.user_factors_, model.item_factors_,
                                  prepare(model.user_items_, get_backend("cpu")))
    assert model.monitor_.rows[-1]["objective"] == pytest.approx(whole, rel=1e-9)
    assert model.user_items_.nnz == matrix.nnz


def test_the_callback_counts_the_path_sweeps():
    matrix = communities(600, 400, 40, 10, 0.8, seed=1)
    seen = []
    model = rgals.ALSSolver(factors=8, num_threads=1, random_state=0, tol=0.0).fit(
        matrix, show_progress=False,
        callback=lambda iteration, elapsed, record: seen.append((iteration, elapsed)))
    done = model.regularization_path_[-1].sweeps
    assert [iteration for iteration, _ in seen] == list(range(done, model.iterations))
    assert seen[0][1] > 0  # seconds since the fit began, the path's included
    stopped = []
    model.fit(matrix, show_progress=False,
              callback=lambda iteration, *rest: stopped.append(iteration) or False)
    assert stopped == [done] and f"after sweep {done + 1}" in model.monitor_.stop_reason


def test_the_same_seed_gives_the_same_path():
    matrix = communities(1000, 800, 80, 12, 0.8, seed=4)
    first, second = fit(matrix, factors=8), fit(matrix, factors=8)
    assert first.regularization_path_ == second.regularization_path_
    np.testing.assert_array_equal(first.item_factors_, second.item_factors_)
    third = fit(matrix, factors=8, random_state=1)
    assert third.regularization_path_ != first.regularization_path_


def test_the_path_runs_the_plain_loss_before_top_k_weights():
    matrix = communities(1000, 800, 80, 12, 0.8, seed=4)
    model = fit(matrix, factors=8, loss={"name": "rg2", "top_k": 20})
    assert model.regularization_path_ is not None and model.loss_.top_k == 20
    # the weights refreshed in the last sweeps: the monitor's rows carry what moved
    assert any("refresh_weight_mean" in row for row in model.monitor_.rows)


def test_every_backend_takes_the_same_path(backend_name):
    matrix = communities(800, 600, 60, 12, 0.8, seed=4)
    cpu = fit(matrix, factors=8, dtype=np.float64)
    other = fit(matrix, factors=8, dtype=np.float64, backend=backend_name)
    assert [stage.regularization for stage in other.regularization_path_] == \
        [stage.regularization for stage in cpu.regularization_path_]
    np.testing.assert_allclose(rgals.backend.to_host(other.item_factors_), cpu.item_factors_,
                               rtol=1e-6, atol=1e-9)
