"""The benchmark protocol of bench/run.py on small synthetic data: the validation curve,
one training loop per method, tuning + refit + test, the report and the command line."""

import json

import numpy as np
import pytest

from bench import common, run

import rgals
from rgals.data import holdout_split, synthetic, validation_split
from rgals.metrics import ranking_metrics


@pytest.fixture(scope="module")
def splits():
    train, test = holdout_split(synthetic(150, 90, seed=7), ratio=0.2, seed=7)
    fit_part, validation = validation_split(train, ratio=0.1, seed=0)
    return train, test, fit_part, validation


def default_setting(method):
    return run.SPACES[method][0]


def test_curve_keeps_the_best_point_and_stops_after_patience_steps_without_one():
    curve = run.Curve(validation=None, mask=None, patience=2)
    assert curve.add(1, 0.1, 0.30, 0.5)
    assert curve.add(2, 0.2, 0.25, 0.4)  # one step without improvement
    assert curve.add(3, 0.3, 0.35, 0.6)  # a new best resets the count
    assert curve.add(4, 0.4, 0.35, 0.6)  # a tie is no improvement
    assert not curve.add(5, 0.5, 0.20, 0.3)  # second step without: stop
    assert curve.best() == (3, 0.3, 0.35, 0.6)


@pytest.mark.filterwarnings("ignore:OpenBLAS is configured")  # implicit's; run.py pins BLAS
@pytest.mark.parametrize("method", list(run.SPACES))
def test_each_method_trains_and_its_curve_measures_the_returned_factors(method, splits):
    if method == "implicit":
        pytest.importorskip("implicit")
    _, _, fit_part, validation = splits
    curve = run.Curve(validation, fit_part, patience=10)
    users, items, seconds = run.train(method, default_setting(method), fit_part, 3, 1, 0,
                                      curve)
    assert users.shape == (fit_part.shape[0], common.FACTORS)
    assert items.shape == (fit_part.shape[1], common.FACTORS)
    assert len(seconds) == len(curve.points) == 3 and min(seconds) > 0
    assert [point[0] for point in curve.points] == [1, 2, 3]
    assert [point[1] for point in curve.points] == pytest.approx(np.cumsum(seconds).tolist())
    last = ranking_metrics(np.asarray(users), np.asarray(items), validation, fit_part, K=20,
                           metrics=("ndcg", "recall"))
    assert curve.points[-1][2] == pytest.approx(last["ndcg@20"], rel=1e-5)
    assert curve.points[-1][3] == pytest.approx(last["recall@20"], rel=1e-5)


def test_run_method_tunes_on_validation_refits_the_best_and_tests_it(splits, monkeypatch,
                                                                    tmp_path):
    train, test, _, _ = splits
    monkeypatch.setattr(run, "load", lambda dataset: (train, test))
    record = run.run_method("health", "rgals-rg2", trials=3, steps=5, patience=2, threads=1,
                            seed=0, out=tmp_path)
    saved = json.loads((tmp_path / "health" / "rgals-rg2.json").read_text())
    assert saved["test"] == pytest.approx(record["test"])
    trials = saved["trials"]
    # trial 0: the library's defaults, and the values they resolved to on this data
    defaults = rgals.ALSSolver(iterations=1).fit(train, show_progress=False).loss_
    assert len(trials) == 3 and trials[0]["params"] == {"loss": "rg2"}
    assert trials[0]["resolved"] == {"alpha": defaults.alpha,
                                     "regularization": defaults.regularization}
    assert all("resolved" not in trial for trial in trials[1:])
    assert trials[1]["params"] != trials[0]["params"]
    assert saved["search"] == "optuna"
    complete = [trial for trial in trials if trial["state"] == "complete"]
    best = max(complete, key=lambda trial: trial["validation_ndcg@20"])
    assert saved["best"] == best
    for trial in complete:
        ndcgs = [point[2] for point in trial["curve"]]
        assert trial["validation_ndcg@20"] == max(ndcgs)
        assert trial["steps_run"] == len(ndcgs) <= 5
    # the refit ran as many sweeps as the best trial needed, on all of train
    assert len(saved["refit_step_seconds"]) == best["best_step"]
    users, items, _ = run.train("rgals-rg2", best["params"], train, best["best_step"], 1, 0)
    again = ranking_metrics(users, items, test, train, K=(10, 20), metrics=("recall", "ndcg"))
    assert saved["test"] == pytest.approx(again, rel=1e-6)


def test_report_tables_every_method_beside_its_published_row_and_draws_the_plot(
        splits, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")  # the bench extra's; `pip install .[test]` skips this
    train, test, _, _ = splits
    monkeypatch.setattr(run, "load", lambda dataset: (train, test))
    for method in ("rgals-rg2", "sampled_softmax_at_k"):
        run.run_method("health", method, trials=2, steps=3, patience=2, threads=1, seed=0,
                       out=tmp_path / "out")
    text = run.report(tmp_path / "out", tmp_path / "plots")
    equal_size = text.split("Frontier")[0]  # the 64-factor table, before the frontier's
    rows = [line for line in equal_size.splitlines()
            if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| method |") and len(rows) == 3
    by_method = {row.split(" | ")[0][2:]: row for row in rows[1:]}
    assert by_method["sampled_softmax_at_k"].endswith("| 0.1823 / 0.1390 |")  # SL@20 row
    assert by_method["rgals-rg2"].endswith("| - |")
    tested = [float(row.split(" | ")[5]) for row in rows[1:]]
    assert tested == sorted(tested, reverse=True)  # best test NDCG@20 first
    assert (tmp_path / "plots" / "health.png").stat().st_size > 0


def test_results_rows_reproduce_their_test_figures_with_als_solver_alone(
        splits, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")  # the report draws its plots
    train, test, _, _ = splits
    monkeypatch.setattr(run, "load", lambda dataset: (train, test))
    for factors in (64, 8):
        run.run_method("health", "rgals-rg2", trials=2, steps=4, patience=2, threads=1, seed=3,
                       out=tmp_path / "out", factors=factors)
    assert sorted(path.name for path in (tmp_path / "out" / "health").iterdir()) == \
        ["rgals-rg2-8.json", "rgals-rg2.json"]
    text = run.report(tmp_path / "out", tmp_path / "plots", tmp_path / "results")
    assert "| rgals-rg2 | 8 |" in text and "| rgals-rg2 | 64 |" in text  # the frontier table
    assert (tmp_path / "plots" / "health_frontier.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results" / "health.json").read_text())
    assert saved["dataset"] == "health"
    assert [row["factors"] for row in saved["methods"]] == [8, 64]
    for row in saved["methods"]:
        assert row["seed"] == 3 and row["method"] == "rgals-rg2"
        model = rgals.ALSSolver(factors=row["factors"], iterations=row["best_step"], tol=0,
                                random_state=row["seed"], **row["params"]).fit(
            train, show_progress=False)
        again = ranking_metrics(model.user_factors_, model.item_factors_, test, train,
                                K=(10, 20), metrics=("recall", "ndcg"))
        assert row["test"] == pytest.approx(again, rel=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["--trials", "0"], "--trials: expected an integer >= 1"),
    (["--patience", "x"], "--patience: expected an integer >= 1"),
    (["--methods", "adagrad"], "unknown methods ['adagrad']"),
])
def test_command_line_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        run.main(argv)
    assert message in capsys.readouterr().err


def test_missing_dataset_folder_says_where_the_data_is_expected(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "DATA", tmp_path)
    with pytest.raises(FileNotFoundError, match="must hold train.tsv and test.tsv"):
        common.load("health")


def test_a_script_without_its_data_ends_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(common, "DATA", tmp_path)
    assert common.script(lambda: common.load("health")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "RGALS_DATA" in err and err.count("\n") == 1
