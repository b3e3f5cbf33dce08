"""bench/evaluation_time.py runs end to end on synthetic data and checks its two paths."""


from bench import evaluation_time

from rgals.data import holdout_split, synthetic


def test_the_table_compares_pruned_and_unpruned_on_the_same_model(monkeypatch, capsys):
    matrix = synthetic(n_users=1500, n_items=300, factors=4, mean_activity=10.0, seed=0)
    train, test = holdout_split(matrix, ratio=0.2, seed=0)
    monkeypatch.setattr(evaluation_time, "load", lambda dataset: (train, test))
    evaluation_time.main(["--factors", "4", "--repeats", "2", "--threads", "1"])
    row = capsys.readouterr().out.strip().splitlines()[-1].split("|")
    assert row[1].strip() == "4" and row[5].strip().endswith("x")
    assert 0.0 < float(row[6]) <= 1.0
