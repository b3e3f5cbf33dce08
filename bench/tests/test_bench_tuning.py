"""bench/tuning.py on small synthetic data: defaults, the rule without the path, old
defaults and tuned, and its table."""

import json

import pytest

from bench import tuning as bench_tuning

import rgals
from rgals.data import holdout_split, synthetic
from rgals.metrics import ranking_metrics


@pytest.fixture
def small(monkeypatch):
    pytest.importorskip("optuna")
    train, test = holdout_split(synthetic(150, 90, seed=7), ratio=0.2, seed=7)
    monkeypatch.setattr(bench_tuning, "load", lambda dataset: (train, test))
    monkeypatch.setattr(bench_tuning, "SYNTHETIC", {"synthetic-tiny": (120, 60, 4, 10.0)})
    return train, test


def test_each_setting_is_tested_once_on_the_test_split(small, tmp_path, capsys):
    train, test = small
    assert bench_tuning.main(["--dataset", "health", "--synthetic", "--trials", "3",
                              "--threads", "1", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "health.json").read_text())
    rule = {"regularization": rgals.losses.RG2().resolve(train).regularization}
    assert row["defaults"]["path"][0]["regularization"] == rule["regularization"]
    for name, params in (("defaults", {}), ("rule", rule), ("before", bench_tuning.BEFORE)):
        model = rgals.ALSSolver(num_threads=1, random_state=0, **params).fit(
            train, show_progress=False)
        expected = ranking_metrics(model.user_factors_, model.item_factors_, test, train,
                                   K=20)["ndcg@20"]
        assert row[name]["test_ndcg@20"] == pytest.approx(expected, rel=1e-6)
        assert row[name]["alpha"] == model.loss_.alpha
    tuned = rgals.ALSSolver(**row["tuned"]["params"]).fit(train, show_progress=False)
    assert row["tuned"]["test_ndcg@20"] == pytest.approx(ranking_metrics(
        tuned.user_factors_, tuned.item_factors_, test, train, K=20)["ndcg@20"], rel=1e-6)
    assert len(row["tuned"]["states"]) == 3
    planted = json.loads((tmp_path / "synthetic-tiny.json").read_text())
    assert planted["validation_tuned"] >= planted["validation_defaults"] > 0
    table = capsys.readouterr().out
    assert "| health |" in table and "| synthetic-tiny | validation" in table
