"""bench/dask_scale.py on a tiny size: its records, and the traffic model by hand."""

import json

import numpy as np
import pytest

pytest.importorskip("distributed")
from bench import dask_scale


def test_the_traffic_model_counts_statistics_and_factors():
    statistics = (4 ** 2 + 4) * 8
    # 10 users, 6 items, 4 factors of 4 bytes, 2 blocks a side, 2 workers, all broadcast
    whole = dask_scale.traffic_model((10, 6), 4, 2, 2, 2, broadcast_bytes=1000)
    items, users = 6 * 16, 10 * 16
    assert whole == pytest.approx(2 * (2 * statistics * 0.5 + statistics)
                                  + items * 1.5 + users * 1.5)
    touched = dask_scale.traffic_model((10, 6), 4, 2, 2, 2, broadcast_bytes=0)
    assert touched == pytest.approx(2 * (2 * statistics * 0.5 + statistics)
                                    + 2 * items * 0.5 + 2 * users * 0.5)
    assert dask_scale.traffic_model((10, 6), 4, 2, 2, 1, broadcast_bytes=0) == 0


def test_a_tiny_run_writes_every_figure(tmp_path, monkeypatch):
    monkeypatch.setitem(dask_scale.SIZES, "tiny", (3000, 400, 10.0))
    assert dask_scale.main(["--size", "tiny", "--factors", "8", "--sweeps", "2",
                            "--cores", "2", "--repeat", "2", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "tiny.json").read_text())
    assert row["interactions"] > 0 and row["one_machine"]["median_sweep_seconds"] > 0
    assert [(run["workers"], run["threads_per_worker"]) for run in row["dask"]] == \
        [(1, 2), (2, 1)]
    for run in row["dask"]:
        assert run["median_sweep_seconds"] > 0 and run["overhead"] > 0
    assert [len(values) for values in row["overheads"].values()] == [2, 2]
    assert row["overhead_median"]["2x1"] == pytest.approx(np.median(row["overheads"]["2x1"]))
    # one worker sends the client only per-block scalars (decreases, Hessian bounds) and
    # the Gram's eigenvalues; two exchange factors
    assert row["dask"][0]["bytes_moved_per_sweep"] < 4000
    assert row["dask"][1]["bytes_moved_per_sweep"] > 20 * row["dask"][0][
        "bytes_moved_per_sweep"]
    assert row["projection_1B_32_workers"]["compute_seconds"] > 0
