"""bench/warm_start.py runs end to end on synthetic data and reports a warm start."""

from bench import warm_start

from rgals.data import holdout_split, synthetic


def test_the_warm_table_ends_at_the_refits_quality(monkeypatch, capsys):
    matrix = synthetic(n_users=600, n_items=150, factors=4, mean_activity=12.0, seed=3)
    train, test = holdout_split(matrix, ratio=0.2, seed=0)
    monkeypatch.setattr(warm_start, "load", lambda dataset: (train, test))
    assert warm_start.main(["--threads", "1", "--sweeps", "6", "--within", "0.05"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| warm start")
            or line.startswith("| partial_fit")]
    assert len(rows) == 1 + 6 and rows[0][1].startswith(" partial_fit_users")
    assert [row[1].split(",")[1].split()[0] for row in rows[1:]] == \
        [str(sweeps) for sweeps in range(1, 7)]
    assert all(0.0 < float(row[4]) <= 1.0 for row in rows)
    assert "of the refit after" in out or "no warm start within" in out


def test_without_new_keeps_the_shape_and_drops_about_the_fraction():
    matrix = synthetic(n_users=300, n_items=100, factors=4, mean_activity=10.0, seed=1)
    old = warm_start.without_new(matrix, 0.2, seed=0)
    assert old.shape == matrix.shape
    assert 0.7 < old.nnz / matrix.nnz < 0.9
    assert ((old != 0).multiply(matrix != 0)).nnz == old.nnz  # a subset
