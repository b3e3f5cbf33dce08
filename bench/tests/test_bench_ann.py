"""bench/ann.py runs end to end on a small model and reports every ranking."""

import pytest

from bench import ann

import rgals
from rgals.data import synthetic

pytest.importorskip("faiss")


def test_the_table_has_the_exact_ranking_and_every_setting(monkeypatch, capsys):
    matrix = synthetic(n_users=400, n_items=300, factors=4, mean_activity=10.0, seed=2)
    model = rgals.ALSSolver(factors=8, iterations=3, random_state=0).fit(
        matrix, show_progress=False)
    monkeypatch.setattr(ann, "model_of", lambda name, threads, seed: model)
    assert ann.main(["--data", "synthetic", "--users", "200", "--single", "20",
                     "--threads", "1"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| synthetic")]
    assert [row[2].split()[0] for row in rows] == ["exact"] + [m for m, _ in ann.SETTINGS]
    assert rows[0][6].strip() == "1"
    for row in rows[1:]:
        assert 0.3 < float(row[6]) <= 1.0
        assert float(row[4].replace(",", "")) > 0


def test_recall_counts_the_exact_lists_share():
    import numpy as np
    exact = np.array([[1, 2, 3, -1], [4, 5, 6, 7]])
    found = np.array([[3, 9, 1, -1], [4, 5, -1, -1]])
    assert ann.recall(found, exact) == pytest.approx((2 / 3 + 2 / 4) / 2)
