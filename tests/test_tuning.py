"""rgals.tune: the search, its failures, its seed and its fallback without Optuna."""

import importlib.util
import math

import numpy as np
import pytest

import rgals
from rgals import data, tuning
from conftest import interrupt_tune_at
from rgals.losses import Hyperparameter


@pytest.fixture(scope="module")
def planted():
    """Users x items with a planted rank-4 structure, large enough for ranking to show it."""
    return data.synthetic(n_users=300, n_items=150, factors=4, mean_activity=15, seed=11)


def quick(matrix, **options):
    settings = dict(n_trials=6, factors=8, max_sweeps=8, patience=3, num_threads=1,
                    show_progress=False, refit=False, search="random", random_state=3)
    settings.update(options)
    if settings["factors"] is None:  # searched, or the default
        del settings["factors"]
    return rgals.tune(matrix, **settings)


def test_tuned_setting_beats_the_defaults_on_validation(planted):
    # iALS keeps implicit's fixed defaults, which this data does not suit
    result = quick(planted, n_trials=8, loss="ials")
    default = result.trials[0]
    assert default.params == {"alpha": 1.0, "regularization": 0.01}
    assert result.best_value > 1.05 * default.value
    assert result.best_params["alpha"] != default.params["alpha"]
    # rg2's defaults come from the data: trial 0 writes out what they were
    rg2 = quick(planted, n_trials=4)
    resolved = rgals.losses.RG2().resolve(data.validation_split(planted, 0.1, seed=3)[0])
    assert rg2.trials[0].params == {"alpha": resolved.alpha,
                                    "regularization": resolved.regularization}
    assert rg2.best_value >= rg2.trials[0].value
    # the value is the best validation metric of that trial, at its recorded sweep
    model = rgals.ALSSolver(**result.best_params)  # loss="ials" among them
    fit_part, validation = data.validation_split(planted, ratio=0.1, seed=3)
    model.fit(fit_part, show_progress=False)
    scores = rgals.metrics.ranking_metrics(model.user_factors_, model.item_factors_,
                                           validation, fit_part, K=20)
    assert scores["ndcg@20"] == pytest.approx(result.best_value, rel=1e-6)


def test_trials_record_each_setting_and_table(planted):
    result = quick(planted)
    assert [trial.number for trial in result.trials] == list(range(6))
    assert set(result.trials[1].params) == {"alpha", "regularization"}  # the declared space
    assert all(1e-4 <= trial.params["alpha"] <= 1.0 for trial in result.trials[1:])
    assert all(1 <= trial.best_sweep <= trial.sweeps <= 8 for trial in result.trials)
    for trial in result.trials:
        sweeps, seconds, values, recalls = zip(*trial.curve)
        assert list(sweeps) == list(range(1, trial.sweeps + 1))
        assert trial.value == max(values) and values[trial.best_sweep - 1] == trial.value
        assert all(0 < a < b for a, b in zip(seconds, seconds[1:]))  # cumulative
        assert all(0 <= recall <= 1 for recall in recalls)
    best = max(result.trials, key=lambda trial: trial.value)
    assert result.best_value == best.value
    assert result.best_params["iterations"] == best.best_sweep
    table = result.table()
    assert table.count("\n") == 7 and "validation ndcg@20" in table
    assert result.to_dict()["params"] == result.best_params


def test_failing_trials_do_not_end_the_search(planted):
    # 1e6 shrinks every factor to zero (collapse); a huge alpha overflows float32
    result = quick(planted, n_trials=8, space={"regularization": [1e-3, 1e6],
                                               "alpha": [0.01, 1e38]})
    states = {trial.state for trial in result.trials}
    assert states == {"complete", "failed"}
    failed = [trial for trial in result.trials if trial.state == "failed"]
    assert all(math.isnan(trial.value) and trial.error for trial in failed)
    assert any("collapsed" in trial.error for trial in failed)
    # the defaults (trial 0) leave both out of best_params
    assert result.best_params.get("regularization") != 1e6
    assert result.best_params.get("alpha") != 1e38


def test_a_search_runs_on_every_backend(planted, backend_name):
    # a collapsing trial is told apart on the device's factors too (issue 30: CuPy's max
    # has no initial=), and the refit model lives on the chosen backend
    result = quick(planted, n_trials=3, backend=backend_name, refit=True,
                   space={"regularization": [1e-3, 1e6]})
    assert {trial.state for trial in result.trials} == {"complete", "failed"}
    assert any("collapsed" in trial.error for trial in result.trials
               if trial.state == "failed")
    assert result.model.backend == backend_name
    cpu = quick(planted, n_trials=3, refit=False, space={"regularization": [1e-3, 1e6]})
    assert [trial.state for trial in result.trials] == [trial.state for trial in cpu.trials]
    assert [trial.value for trial in result.trials] == pytest.approx(
        [trial.value for trial in cpu.trials], rel=1e-3, nan_ok=True)


def test_every_trial_failing_is_an_error(planted):
    with pytest.raises(RuntimeError, match="every trial failed: trial 0"):
        quick(planted, n_trials=2, regularization=1e6, space={"alpha": (0.01, 0.1)})


@pytest.mark.parametrize("search", ["random", "optuna"])
def test_the_same_seed_gives_the_same_trials(planted, search):
    if search == "optuna":
        pytest.importorskip("optuna")
    first, second = (quick(planted, search=search) for _ in range(2))
    assert [(t.params, t.value, t.state) for t in first.trials] == \
        [(t.params, t.value, t.state) for t in second.trials]
    other = quick(planted, search=search, random_state=4)
    assert [t.params for t in other.trials[1:]] != [t.params for t in first.trials[1:]]


def test_optuna_prunes_a_poor_trial_early(planted):
    pytest.importorskip("optuna")
    result = quick(planted, n_trials=14, search="optuna", max_sweeps=12, patience=12,
                   space={"alpha": (1e-4, 1.0, "log"), "regularization": (1e-5, 10.0, "log")})
    assert result.search == "optuna"
    pruned = [trial for trial in result.trials if trial.state == "pruned"]
    assert pruned and all(trial.sweeps < 12 for trial in pruned)
    complete = [trial for trial in result.trials if trial.state == "complete"]
    # a complete trial runs to max_sweeps here (patience = max_sweeps)
    assert all(trial.sweeps == 12 for trial in complete)
    assert result.best_value == max(trial.value for trial in complete)


def test_random_search_runs_without_optuna(planted, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "optuna" else real(name, *rest))
    result = quick(planted, search="auto", n_trials=3)
    assert result.search == "random" and len(result.trials) == 3
    with pytest.raises(ImportError, match=r"pip install 'rgals\[tune\]'"):
        quick(planted, search="optuna")


def test_refit_uses_all_interactions_with_the_best_setting(planted):
    result = quick(planted, n_trials=3, refit=True)
    again = rgals.ALSSolver(**result.best_params).fit(planted, show_progress=False)
    assert result.model.user_items_.nnz == planted.nnz
    np.testing.assert_array_equal(result.model.item_factors_, again.item_factors_)


def test_timeout_limits_the_trials(planted):
    result = quick(planted, n_trials=None, timeout=1e-9)
    assert len(result.trials) == 1  # the first trial always runs


def test_space_takes_names_ranges_choices_and_estimator_parameters():
    assert set(tuning.search_space("rg2")) == {"alpha", "regularization"}
    assert set(tuning.search_space("ials")) == {"alpha", "regularization"}
    named = tuning.search_space("rg2", ["popularity_exponent"])
    assert named["popularity_exponent"].high == 1.0
    space = tuning.search_space("rg2", {"alpha": (0.01, 0.1, "log"), "factors": (8, 32),
                                        "cg_steps": [2, 3], "reg_exponent": (0.0, 1.0)})
    assert space["factors"].kind == "integer" and space["alpha"].log
    assert space["cg_steps"].choices == (2, 3) and space["reg_exponent"].kind == "real"
    custom = Hyperparameter(0.1, "", low=0.05, high=0.2)
    assert tuning.search_space("rg2", {"alpha": custom})["alpha"] is custom


@pytest.mark.parametrize("space, message", [
    ({"gamma": (0, 1)}, "unknown hyperparameter 'gamma'"),
    ({"iterations": (1, 9)}, "'iterations' cannot be searched"),
    ({"factors": None}, "'factors' has no declared domain"),
    ({"alpha": (1.0, 0.1)}, "low < high"),
    ({"alpha": (0.0, 1.0, "log")}, "needs low > 0"),
    ({"alpha": (-1.0, 1.0)}, "alpha must be a finite number >= 0"),
    ({"alpha": "wide"}, "must be \\(low, high\\)"),
    ({"alpha": (0.1, 1.0, "ln")}, "must be \\(low, high\\)"),
    ({"top_k_quantile": ["exact", "median"]}, "unknown top_k_quantile"),
    ({}, "the search space is empty"),
])
def test_bad_spaces_are_clear_errors(space, message):
    with pytest.raises(ValueError, match=message):
        tuning.search_space("rg2", space)


@pytest.mark.parametrize("options, error, message", [
    (dict(n_trials=0), ValueError, "n_trials must be an integer >= 1"),
    (dict(n_trials=None), ValueError, "give n_trials, timeout or both"),
    (dict(timeout=-1), ValueError, "timeout must be a finite number of seconds > 0"),
    (dict(iterations=5), ValueError, "tune sets iterations itself"),
    (dict(random_state=None), ValueError, "random_state must be an integer seed"),
    (dict(search="grid"), ValueError, "search must be one of"),
    (dict(metric="auc@5"), ValueError, "validation_metric must look like"),
    (dict(factors=0), ValueError, "factors must be an integer >= 1"),
    (dict(colour="red"), TypeError, "colour"),
    (dict(loss=rgals.losses.RG2(alpha=0.1)), ValueError, "a Loss object fixes"),
    (dict(alpha=0.1), ValueError, "alpha is both fixed"),
])
def test_bad_arguments_fail_before_any_trial(planted, options, error, message):
    with pytest.raises(error, match=message):
        quick(planted, **options)


def test_validation_of_another_shape_is_refused(planted):
    with pytest.raises(ValueError, match="validation"):
        quick(planted, validation=planted[:, :10])


def test_trials_share_one_prepared_fit_part(planted, monkeypatch):
    from rgals import als

    calls = []
    real = als.prepare
    monkeypatch.setattr(als, "prepare", lambda matrix, backend: calls.append(matrix.nnz)
                        or real(matrix, backend))
    result = quick(planted, n_trials=4, refit=True)
    fit_part = data.validation_split(planted, ratio=0.1, seed=3)[0]
    # one for the four trials' fit part, one for the refit on all interactions
    assert calls == [fit_part.nnz, planted.nnz]
    assert len(result.trials) == 4


def test_the_defaults_training_seconds_start_with_their_path(planted, monkeypatch):
    # the path's sweeps and holdout scorings come before the curve's first sweep: a time
    # to best without them would flatter the defaults
    import types

    ticks = iter(range(0, 10**6, 100))  # the path's clock: 100 s a reading
    monkeypatch.setattr(rgals.path, "time", types.SimpleNamespace(
        perf_counter=lambda: float(next(ticks))))
    result = quick(planted, n_trials=2, max_sweeps=12, patience=12)
    default, drawn = result.trials
    # at least two stages, each read the clock once after the path's start
    assert default.curve[0][1] >= 200
    assert drawn.curve[0][1] < 100  # no path: half steps only


def test_trial_0_records_the_lam_its_path_chose_and_refits_as_the_defaults(planted):
    result = quick(planted, n_trials=2, max_sweeps=12, patience=12)
    default = result.trials[0]
    assert default.defaults and not result.trials[1].defaults
    # the fit's sweeps are numbered from its first: the path's come before the curve
    assert default.sweeps == 12 and default.curve[0][0] > rgals.path.FIRST_SWEEPS
    model = rgals.ALSSolver(factors=8, iterations=12, tol=0.0, random_state=3,
                            num_threads=1).fit(data.validation_split(planted, 0.1, seed=3)[0],
                                               show_progress=False)
    assert default.params == {"alpha": model.loss_.alpha,
                              "regularization": model.loss_.regularization}
    assert model.regularization_path_ is not None
    assert "regularization" not in result.params_of(default)
    assert result.params_of(result.trials[1])["regularization"] == \
        result.trials[1].params["regularization"]


@pytest.mark.parametrize("options, message", [
    (dict(timeout=math.inf), "timeout must be a finite number of seconds"),
    (dict(metric="ndcg@²"), "must look like 'ndcg@20'"),
    (dict(space=5), "space must be None, a hyperparameter name"),
    (dict(factors=None, space={"factors": (0, 4)}), "factors must be an integer >= 1"),
    (dict(factors=None, space={"factors": (2.0, 4.5)}), "'factors' takes integers"),
    (dict(space={"cg_tolerance": (-1, 1)}), "cg_tolerance must be a finite number >= 0"),
    (dict(space={"solver": ["cg", "qr"]}), "unknown solver"),
])
def test_more_bad_arguments_fail_before_any_trial(planted, options, message):
    with pytest.raises(ValueError, match=message):
        quick(planted, **options)


def test_numpy_numbers_are_numbers(planted):
    result = quick(planted, n_trials=None, timeout=np.int64(1), space={"factors": (2.0, 6.0)},
                   factors=None)
    assert result.trials and result.stopped in ("timeout", "trials")
    assert all(isinstance(trial.params.get("factors", 8), int) for trial in result.trials)


def test_cg_tolerance_is_searched_as_a_real_number():
    domain = tuning.search_space("rg2", {"cg_tolerance": (0, 1)})["cg_tolerance"]
    assert domain.kind == "real"
    rng = np.random.default_rng(0)
    drawn = [tuning._draw(rng, domain) for _ in range(20)]
    assert all(0 <= value <= 1 for value in drawn) and len(set(drawn)) == 20
    assert any(not float(value).is_integer() for value in drawn)


def test_validation_inside_the_training_data_is_refused_or_warned(planted):
    with pytest.raises(ValueError, match="every validation interaction .* is also a training"):
        quick(planted, validation=planted)
    fit_part, held = data.validation_split(planted, ratio=0.2, seed=0)
    overlapping = held + fit_part[:, :].multiply(
        (np.arange(planted.shape[0]) < 10)[:, None]).tocsr()
    with pytest.warns(UserWarning, match="validation interactions are also training"):
        quick(fit_part, validation=overlapping, n_trials=1)


def test_a_timeout_and_an_interrupt_say_how_the_search_ended(planted, monkeypatch):
    assert quick(planted, n_trials=None, timeout=1e-9).stopped == "timeout"
    assert quick(planted, n_trials=2).stopped == "trials"
    interrupt_tune_at(monkeypatch, 2)
    result = quick(planted, n_trials=5, refit=True)
    assert result.stopped == "interrupted" and len(result.trials) == 2
    assert result.model is None and result.best_params  # no refit after Ctrl-C
    monkeypatch.setattr(tuning, "_run_trial", lambda *args: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # nothing completed: nothing to keep
        quick(planted)
