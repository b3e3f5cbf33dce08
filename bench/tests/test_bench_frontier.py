"""bench/frontier.py: the refit runs the validation's best sweep count and reads the test
split once; the table has a row per embedding size."""


import pytest

from bench import frontier
from bench import common

import rgals
from rgals.data import holdout_split, synthetic, validation_split
from rgals.metrics import ranking_metrics


def test_a_point_is_the_refit_of_the_best_sweep_count():
    train, test = holdout_split(synthetic(150, 90, seed=5), ratio=0.2, seed=5)
    params = dict(alpha=0.1, regularization=0.01)
    best, sweep, to_best, wall, metrics = frontier.point(train, test, 6, params, 8, 1, 0)
    fit_part, validation = validation_split(train, ratio=0.1, seed=0)
    curve = rgals.ALSSolver(factors=6, iterations=8, tol=0.0, random_state=0,
                            early_stopping=True, patience=2, **params).fit(
        fit_part, show_progress=False, validation=validation).monitor_
    assert (best, sweep) == (curve.best_score, curve.best_sweep) and to_best > 0 < wall
    refit = rgals.ALSSolver(factors=6, iterations=sweep, tol=0.0, random_state=0,
                            **params).fit(train, show_progress=False)
    assert metrics == ranking_metrics(refit.user_factors_, refit.item_factors_, test, train,
                                      K=20)


def test_the_table_has_a_row_per_embedding_size(monkeypatch, capsys):
    train, test = holdout_split(synthetic(120, 80, seed=3), ratio=0.2, seed=3)
    monkeypatch.setattr(common, "load", lambda dataset: (train, test))
    assert frontier.main(["--factors", "2", "4", "--sweeps", "3", "--threads", "1"]) == 0
    table = capsys.readouterr().out.split("seed 0:\n")[1].splitlines()
    rows = [line.strip("| ").split(" | ") for line in table[2:]]
    assert [row[0] for row in rows] == ["2", "4"]
    for row in rows:
        assert 0 < float(row[1]) <= 1 and 0 < float(row[5]) <= 1
        assert 1 <= int(row[2]) <= 3
    with pytest.raises(SystemExit):
        frontier.main(["--factors", "0"])
