"""research/cg_steps.py runs end to end on synthetic data: one row per setting and solve."""


from research import cg_steps

from rgals.data import synthetic, validation_split


def test_one_row_per_setting_and_solve(monkeypatch, capsys):
    matrix = synthetic(n_users=300, n_items=120, factors=4, mean_activity=10.0, seed=0)
    monkeypatch.setattr(cg_steps, "probe_data",
                        lambda dataset, seed: validation_split(matrix, ratio=0.1, seed=seed))
    monkeypatch.setattr(cg_steps, "settings", lambda dataset: {"default": {}})
    cg_steps.main(["--dataset", "health", "--sweeps", "3", "--threads", "1"])
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[3].strip() for row in rows] == ["cg 3", "cg 2", "cg 1", "cholesky"]
    assert all(0.0 <= float(row[4]) <= 1.0 and 1 <= int(row[5]) <= 3 for row in rows)
