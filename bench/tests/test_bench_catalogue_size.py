"""research/catalogue_size.py: the catalogue restriction against brute force, and the probe's
table on small synthetic data."""


import numpy as np
import pytest
import scipy.sparse as sp

from research import catalogue_size
from bench import common

from rgals.data import holdout_split, synthetic


def test_most_popular_keeps_the_top_items_and_the_users_with_two_of_them():
    rng = np.random.default_rng(11)
    dense = (rng.random((40, 25)) < 0.15).astype(np.float64)
    dense[:, 3] = dense[:, 7]  # a tie in popularity: the lower id ranks first
    matrix = sp.csr_matrix(dense)
    for n_items in (1, 5, 12, 25, 30):
        counts = dense.sum(axis=0)
        order = sorted(range(25), key=lambda item: (-counts[item], item))[:n_items]
        columns = dense[:, sorted(order)]
        expected = columns[columns.sum(axis=1) >= 2]
        np.testing.assert_array_equal(
            catalogue_size.most_popular(matrix, n_items).toarray(), expected)


def test_probe_prints_one_row_per_catalogue_size(monkeypatch, capsys):
    train, test = holdout_split(synthetic(120, 80, seed=3), ratio=0.2, seed=3)
    monkeypatch.setattr(common, "load", lambda dataset: (train, test))
    monkeypatch.setattr(catalogue_size, "RG2_GRID", catalogue_size.RG2_GRID[:1])
    monkeypatch.setattr(catalogue_size, "SOFTMAX_GRID", catalogue_size.SOFTMAX_GRID[:1])
    assert catalogue_size.main(["--items", "30", "80", "--epochs", "2", "--threads", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert [int(row.split(" | ")[0][2:]) for row in rows] == [30, 80]
    for row in rows:
        cells = row.strip("| ").split(" | ")
        rg2, softmax = float(cells[3].split()[0]), float(cells[4].split()[0])
        assert 0 < rg2 <= 1 and 0 < softmax <= 1
        assert float(cells[5]) == pytest.approx(rg2 / softmax, abs=2e-3)
