"""research/top_k.py: the probe's table on small synthetic data."""


import pytest

from bench import common
from research import top_k

from rgals.data import holdout_split, synthetic


def test_probe_prints_the_plain_fit_and_each_setting(monkeypatch, capsys):
    train, test = holdout_split(synthetic(120, 80, seed=3), ratio=0.2, seed=3)
    monkeypatch.setattr(common, "load", lambda dataset: (train, test))
    assert top_k.main(["--temperatures", "1", "--quantiles", "exact", "sampled",
                       "--warmups", "0", "2", "--gradients", "no", "--sweeps", "4",
                       "--factors", "4", "--threads", "1", "--top-k", "5"]) == 0
    table = capsys.readouterr().out.split("seed 0:\n")[1].splitlines()
    rows = [line.strip("| ").split(" | ") for line in table[2:]]
    assert [row[0] for row in rows] == [
        "off", "K=5, t=1.0, exact, warm-up 0, gradient no",
        "K=5, t=1.0, exact, warm-up 2, gradient no",
        "K=5, t=1.0, sampled, warm-up 0, gradient no",
        "K=5, t=1.0, sampled, warm-up 2, gradient no"]
    for row in rows:
        assert 0 < float(row[1]) <= 1 and 1 <= int(row[2]) <= 4
    with pytest.raises(SystemExit):
        top_k.main(["--gradients", "maybe"])
