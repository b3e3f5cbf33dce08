"""The Dask mode runs ALSSolver's training loop (rgals.training.run): a default fit with
its regularization path, tol, early stopping on validation data, the monitor, callbacks,
the softmax monitor, GPU-style workers and resume, each against the local fit."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import rgals  # noqa: E402
from rgals.dask import DaskALSSolver  # noqa: E402
from rgals.data import synthetic, validation_split  # noqa: E402

# enough users with two interactions or more for the default's holdout path
DATA = dict(n_users=400, n_items=120, factors=4, mean_activity=10, seed=20261203)
HISTORY = ("sweep", "segment", "objective", "exact", "decrease", "identity_error",
           "hessian_min", "hessian_max", "rate", "rate_bound", "within_bound",
           "predicted_sweeps", "softmax_loss")




@pytest.fixture(scope="module")
def matrix():
    return synthetic(**DATA)


def both(client, data, fit=None, **params):
    """(the Dask model, the local model) of one setting, float64, from one seed."""
    params = dict(dict(factors=6, random_state=0, dtype=np.float64), **params)
    fit = fit or {}
    local = rgals.ALSSolver(num_threads=1, **params).fit(data, show_progress=False, **fit)
    distributed_model = DaskALSSolver(client=client, user_blocks=3, item_blocks=2,
                                      **params).fit(data, show_progress=False, **fit)
    return distributed_model, local


def assert_same_factors(distributed_model, local, rtol=1e-9):
    for name in ("user_factors_", "item_factors_", "previous_item_factors_"):
        got = np.asarray(getattr(distributed_model, name).compute())
        expected = getattr(local, name)
        assert np.abs(got - expected).max() <= rtol * np.abs(expected).max(), name


def assert_same_history(distributed_model, local, rtol=1e-9):
    got, expected = distributed_model.monitor_.history, local.monitor_.history
    assert list(got["side"]) == list(expected["side"])
    for name in HISTORY + tuple(name for name in expected if name.startswith(
            ("validation_", "refresh_"))):
        np.testing.assert_allclose(got[name], expected[name], rtol=rtol, atol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("iterations, stages", [(15, 3), (18, 5)])
def test_a_default_fit_equals_the_default_local_fit(client, matrix, iterations, stages):
    # 15 (the default): down, then up to the budget; 18: a second step up that loses
    # (dropped: the factors go back) and a step between that wins (from the best's factors)
    distributed_model, local = both(client, matrix, iterations=iterations)
    assert len(local.regularization_path_) == stages  # the default chose lam on its path
    for stage, expected in zip(distributed_model.regularization_path_,
                               local.regularization_path_, strict=True):
        assert stage.regularization == pytest.approx(expected.regularization, rel=1e-12)
        assert stage.sweeps == expected.sweeps
        assert stage.holdout_ndcg == pytest.approx(expected.holdout_ndcg, rel=1e-9)
    assert distributed_model.loss_ == local.loss_
    assert_same_factors(distributed_model, local)
    assert_same_history(distributed_model, local)
    assert distributed_model.monitor_.stop_reason == local.monitor_.stop_reason


def test_tol_stops_at_the_same_sweep(client, matrix):
    distributed_model, local = both(client, matrix, regularization=0.05, tol=3e-3,
                                    iterations=30)
    assert "converged" in local.monitor_.stop_reason
    assert local.monitor_.rows[-1]["sweep"] < 30
    assert distributed_model.monitor_.stop_reason == local.monitor_.stop_reason
    assert_same_history(distributed_model, local)
    assert_same_factors(distributed_model, local)


def test_early_stopping_on_validation_data(client, matrix):
    fit_part, held = validation_split(matrix, 0.2, seed=1)
    distributed_model, local = both(
        client, fit_part, fit=dict(validation=held), regularization=0.001, alpha=0.3,
        iterations=25, tol=0.0, early_stopping=True, patience=2, eval_every=2,
        softmax_users=50, validation_metric="recall@10")
    monitor, expected = distributed_model.monitor_, local.monitor_
    assert "early stopping" in expected.stop_reason
    assert monitor.best_sweep == expected.best_sweep < expected.rows[-1]["sweep"]
    assert monitor.best_score == pytest.approx(expected.best_score, rel=1e-9)
    assert monitor.stop_reason == expected.stop_reason
    assert np.isfinite(monitor.history["softmax_loss"]).any()
    assert_same_history(distributed_model, local)
    assert_same_factors(distributed_model, local)  # the best sweep's, restored


@pytest.mark.parametrize("params", [
    dict(loss="rgx", alpha=0.05, regularization=0.02, monitor="full", iterations=4),
    dict(loss={"name": "rg2", "top_k": 5, "top_k_gradient": True}, alpha=0.1,
         regularization=0.02, iterations=4, monitor="full"),
], ids=["rgx-full", "top-k"])
def test_the_full_monitor_and_a_refresh_agree(client, matrix, params):
    distributed_model, local = both(client, matrix, **params)
    assert local.monitor_.history["exact"].all()
    assert_same_history(distributed_model, local)
    assert np.nanmax(distributed_model.monitor_.history["identity_error"]) < 1e-9


def test_callbacks_get_the_same_arguments(client, matrix):
    seen = {"local": [], "dask": []}

    def keeper(name):
        def callback(iteration, elapsed, record):
            seen[name].append((iteration, elapsed, record))
            return iteration < 2  # stops after the third sweep
        return callback

    params = dict(factors=6, random_state=0, dtype=np.float64, regularization=0.02,
                  iterations=8, tol=0.0)
    rgals.ALSSolver(num_threads=1, **params).fit(matrix, show_progress=False,
                                                 callback=keeper("local"))
    DaskALSSolver(client=client, **params).fit(matrix, show_progress=False,
                                               callback=keeper("dask"))
    assert [call[0] for call in seen["dask"]] == [call[0] for call in seen["local"]] == \
        [0, 1, 2]
    for (_, elapsed, record), (_, _, expected) in zip(seen["dask"], seen["local"]):
        # elapsed counts from the fit's start, as ALSSolver's: the layout included
        assert elapsed > record["seconds"] > 0
        assert sorted(record) == sorted(expected)
        for name in ("sweep", "objective", "decrease", "user_decrease", "item_decrease",
                     "rate_bound"):
            assert record[name] == pytest.approx(expected[name], rel=1e-9, nan_ok=True)
    assert seen["dask"][-1][1] > seen["dask"][0][1]


def test_gpu_style_workers_run_the_batched_kernels(client, matrix):
    # "_batched": NumPy running the GPU's kernels, in the workers' tasks
    params = dict(loss="rgx", alpha=0.05, regularization=0.02, iterations=4, tol=0.0)
    batched, _ = both(client, matrix, backend="_batched", **params)
    cpu, local = both(client, matrix, **params)
    assert_same_factors(batched, local, rtol=1e-9)
    assert_same_factors(cpu, local, rtol=1e-9)


def test_initial_factors_drawn_on_the_workers(client, matrix):
    params = dict(factors=6, regularization=0.02, iterations=3, tol=0.0, random_state=5,
                  user_blocks=3, item_blocks=2, client=client)
    first = DaskALSSolver(initialization="workers", **params).fit(matrix, show_progress=False)
    again = DaskALSSolver(initialization="workers", **params).fit(matrix, show_progress=False)
    np.testing.assert_array_equal(first.user_factors_.compute(), again.user_factors_.compute())
    client_drawn = DaskALSSolver(**params).fit(matrix, show_progress=False)
    assert np.abs(first.user_factors_.compute() - client_drawn.user_factors_.compute()).max() > 1e-3
    # a start of the same scale: the same objective after three sweeps within a few percent
    assert first.monitor_.rows[-1]["objective"] == pytest.approx(
        client_drawn.monitor_.rows[-1]["objective"], rel=0.05)


def test_resuming_a_default_fit_keeps_its_path(client, matrix, tmp_path):
    params = dict(factors=6, random_state=0, dtype=np.float64, user_blocks=3,
                  item_blocks=2, client=client, tol=0.0)
    whole = DaskALSSolver(**params).fit(matrix, show_progress=False)
    path_sweeps = whole.regularization_path_[-1].sweeps
    # a checkpoint after the first sweep past the path, then the fit interrupted
    DaskALSSolver(checkpoint_every=path_sweeps + 1, checkpoint_dir=tmp_path, **params).fit(
        matrix, show_progress=False, callback=lambda iteration, *_: iteration < path_sweeps)
    resumed = DaskALSSolver(**params).fit(matrix, show_progress=False, resume=tmp_path)
    assert resumed.regularization_path_ == whole.regularization_path_
    assert resumed.loss_ == whole.loss_
    assert resumed.monitor_.rows[0]["sweep"] == path_sweeps + 2
    np.testing.assert_array_equal(resumed.user_factors_.compute(),
                                  whole.user_factors_.compute())


def test_values_that_would_overflow_are_refused_before_any_sweep(client, matrix):
    bad = matrix.copy()
    bad.data[:] = 1e30
    with pytest.raises(ValueError, match="overflow inside the solvers"):
        DaskALSSolver(client=client, factors=4, iterations=2).fit(bad, show_progress=False)


def test_the_readme_example_runs_as_a_script(tmp_path):
    root = Path(__file__).resolve().parents[1]
    script = root / "examples" / "dask_fit.py"
    source = script.read_text()
    # the README shows the script itself, from its imports on
    assert source[source.index("import sys"):] in (root / "README.md").read_text()
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "model")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "regularization chosen on the holdout path: 0.01" in result.stdout
    ndcg = float(result.stdout.split("'ndcg@20': ")[1].split(",")[0])
    assert ndcg == pytest.approx(0.1403, abs=2e-3)  # the default ALSSolver's on Health
    assert (tmp_path / "model" / "manifest.json").is_file()
    loaded = rgals.load(tmp_path / "model")
    assert loaded.recommend(0, N=5)[0].shape == (5,)
