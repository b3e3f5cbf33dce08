"""rgals.dask: the distributed fit equals ALSSolver's, on a LocalCluster of two worker
processes that the tests start and stop themselves."""

import json
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")

import rgals  # noqa: E402
from rgals import dask as rgals_dask  # noqa: E402
from rgals.dask import DaskALSSolver  # noqa: E402
from conftest import start_cluster  # noqa: E402
from rgals.data import synthetic  # noqa: E402

PARAMS = dict(factors=6, regularization=0.02, iterations=5, random_state=0)




@pytest.fixture
def own_cluster():
    """A cluster of its own, for tests that take workers away."""
    cluster, client = start_cluster()
    yield cluster, client
    client.close()
    cluster.close()


@pytest.fixture
def matrix():
    # one draw (not the conftest's three): each case here starts processes and fits twice
    return synthetic(n_users=90, n_items=60, factors=4, mean_activity=9, seed=20261201)


def local_fit(matrix, **params):
    settings = dict(PARAMS, num_threads=1)
    settings.update(params)
    return rgals.ALSSolver(**settings).fit(matrix, show_progress=False)


def dask_fit(client, data, resume=None, callback=None, **params):
    settings = dict(PARAMS, client=client)
    settings.update(params)
    return DaskALSSolver(**settings).fit(data, resume=resume, show_progress=False,
                                         callback=callback)


def assert_same_model(distributed_model, local, rtol):
    for name in ("user_factors_", "item_factors_", "previous_item_factors_"):
        got = np.asarray(getattr(distributed_model, name).compute())
        expected = getattr(local, name)
        scale = np.abs(expected).max()
        assert np.abs(got - expected).max() <= rtol * scale, name


LOSSES = [dict(loss="rg2"), dict(loss="rgx", alpha=0.05), dict(loss="ials"),
          dict(loss={"name": "rg2", "popularity_exponent": 0.5})]


@pytest.mark.parametrize("grid", [(1, 1), (2, 1), (1, 2), (3, 3)])
@pytest.mark.parametrize("loss", LOSSES, ids=["rg2", "rgx", "ials", "rg2-prior"])
def test_the_distributed_model_equals_alssolvers(client, matrix, loss, grid):
    params = dict(loss, dtype=np.float64)
    assert_same_model(dask_fit(client, matrix, user_blocks=grid[0], item_blocks=grid[1],
                               **params), local_fit(matrix, **params), rtol=1e-9)


@pytest.mark.parametrize("loss", LOSSES[:3], ids=["rg2", "rgx", "ials"])
def test_float32_agrees_to_1e_4(client, matrix, loss):
    assert_same_model(dask_fit(client, matrix, user_blocks=3, item_blocks=2, **loss),
                      local_fit(matrix, **loss), rtol=1e-4)


TOP_K = [{"name": "rg2", "top_k": 5},
         {"name": "rg2", "top_k": 5, "top_k_quantile": "sampled", "top_k_samples": 20,
          "top_k_damping": 0.5, "top_k_gradient": True},
         {"name": "rgx", "top_k": 5, "top_k_warmup": 1, "top_k_refresh": 2}]


@pytest.mark.parametrize("grid, broadcast", [((1, 1), rgals_dask.BROADCAST_BYTES),
                                             ((3, 3), 0)], ids=["1x1", "3x3-touched"])
@pytest.mark.parametrize("loss", TOP_K, ids=["exact", "sampled-damped-gradient",
                                             "rgx-warmup-refresh"])
def test_the_per_sweep_top_k_weights_are_computed_per_block(client, matrix, loss, grid,
                                                            broadcast, monkeypatch):
    monkeypatch.setattr(rgals_dask.layout, "TOUCHED_AT_MOST", 1.0)  # every block local
    params = dict(loss=loss, alpha=0.05, dtype=np.float64)
    model = dask_fit(client, matrix, user_blocks=grid[0], item_blocks=grid[1],
                     broadcast_bytes=broadcast, **params)
    assert_same_model(model, local_fit(matrix, **params), rtol=1e-9)
    assert model.loss_.top_k == 5  # fold-in: the plain confidences


def test_more_blocks_than_rows(client):
    small = sp.random(9, 7, density=0.4, format="csr", random_state=np.random.default_rng(3))
    small.data = 0.5 + small.data
    params = dict(loss="rgx", alpha=0.05, dtype=np.float64, factors=3)
    model = dask_fit(client, small, user_blocks=20, item_blocks=15, **params)
    assert model.user_factors_.numblocks[0] == 9 and model.item_factors_.numblocks[0] == 7
    assert_same_model(model, local_fit(small, **params), rtol=1e-9)


def test_blocks_that_receive_only_the_rows_they_touch(client, matrix, monkeypatch):
    monkeypatch.setattr(rgals_dask.layout, "TOUCHED_AT_MOST", 1.0)  # every block local
    params = dict(loss="rgx", alpha=0.05, dtype=np.float64)
    whole = dask_fit(client, matrix, user_blocks=3, item_blocks=3, **params)
    touched = dask_fit(client, matrix, user_blocks=3, item_blocks=3, broadcast_bytes=0,
                       **params)
    np.testing.assert_allclose(touched.user_factors_.compute(), whole.user_factors_.compute(),
                               rtol=0, atol=1e-12)
    assert_same_model(touched, local_fit(matrix, **params), rtol=1e-9)


def sparse_first_users(matrix, items=5):
    """`matrix` with its first third of users' pairs moved to the first `items` items:
    that user block touches few items, the others most."""
    dense = matrix.toarray()
    third = matrix.shape[0] // 3
    dense[:third] = 0
    rng = np.random.default_rng(7)
    for user in range(third):
        dense[user, rng.choice(items, size=rng.integers(1, items + 1), replace=False)] = 1
    return sp.csr_matrix(dense)


def test_a_block_that_touches_most_of_the_other_side_receives_it_whole(client, matrix):
    from rgals.dask.layout import Layout
    mixed = sparse_first_users(matrix)
    loss = rgals.ALSSolver().checked_params()["loss"]
    layout = Layout.build(client, mixed, loss, (3, 3), (None, None, None), 8, 0)
    assert layout.local_columns["user"] == [True, False, False]
    assert layout.local_columns["item"] == [False, False, False]
    params = dict(loss="rgx", alpha=0.05, dtype=np.float64)
    for solver in ("auto", "cholesky"):  # the rotated side, and the plain one
        model = dask_fit(client, mixed, user_blocks=3, item_blocks=3, broadcast_bytes=0,
                         solver=solver, **params)
        assert_same_model(model, local_fit(mixed, solver=solver, **params), rtol=1e-9)


def frame_of(matrix, user_ids, item_ids, partitions=4, values=True):
    coo = matrix.tocoo()
    table = {"user": user_ids[coo.row], "item": item_ids[coo.col]}
    if values:
        table["value"] = coo.data
    return pd.DataFrame(table), dd.from_pandas(pd.DataFrame(table), npartitions=partitions)


def test_a_dataframe_with_gaps_duplicates_and_an_empty_partition(client, matrix):
    n_users, n_items = matrix.shape
    # ids with gaps: no user below 100 (a whole empty block), every other item id unused
    user_ids, item_ids = np.arange(n_users) + 100, 2 * np.arange(n_items)
    table, frame = frame_of(matrix, user_ids, item_ids)
    doubled = dd.from_pandas(table.iloc[:5], npartitions=1)  # 5 pairs given twice
    empty = dd.from_pandas(table.iloc[:0], npartitions=1)
    frame = dd.concat([frame, doubled, empty])
    expected = sp.csr_matrix((table["value"], (table["user"], table["item"])),
                             shape=(user_ids[-1] + 1, item_ids[-1] + 1))
    expected = expected + sp.csr_matrix(
        (table["value"][:5], (table["user"][:5], table["item"][:5])), shape=expected.shape)
    params = dict(loss="rgx", alpha=0.05, dtype=np.float64)
    model = dask_fit(client, frame, user_blocks=4, item_blocks=3, **params)
    assert model.user_factors_.shape == (user_ids[-1] + 1, PARAMS["factors"])
    assert_same_model(model, local_fit(expected, **params), rtol=1e-9)
    local = model.to_local()
    assert (local.user_items_ != expected.tocsr()).nnz == 0


def test_a_dataframe_read_from_parquet(client, matrix, tmp_path):
    table, _ = frame_of(matrix, np.arange(matrix.shape[0]), np.arange(matrix.shape[1]))
    for part, rows in enumerate(np.array_split(np.arange(len(table)), 3)):
        table.iloc[rows].to_parquet(tmp_path / f"part-{part}.parquet")
    frame = dd.read_parquet(tmp_path)
    params = dict(loss="ials", dtype=np.float64)
    assert_same_model(dask_fit(client, frame, **params), local_fit(matrix, **params),
                      rtol=1e-9)


def test_a_dataframe_without_values_counts_each_pair_once(client, matrix):
    binary = matrix.copy()
    binary.data[:] = 1.0
    _, frame = frame_of(matrix, np.arange(matrix.shape[0]), np.arange(matrix.shape[1]),
                        values=False)
    assert_same_model(dask_fit(client, frame, dtype=np.float64), local_fit(
        binary, dtype=np.float64), rtol=1e-9)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.rename(columns={"item": "product"}), "no column 'item'"),
    (lambda t: t.assign(user=t["user"].astype(float)), "not integer ids"),
    (lambda t: t.assign(item=t["item"].astype(str)), "not integer ids"),
    (lambda t: t.assign(user=t["user"] - 5), "negative ids"),
    (lambda t: t.assign(value=-t["value"]), "negative values"),
    (lambda t: t.assign(value=t["value"].where(t.index % 7 > 0)), "missing or infinite"),
    (lambda t: t.iloc[:0], "no rows"),
])
def test_bad_frames_are_clear_errors_and_write_nothing(client, matrix, tmp_path, change,
                                                       message):
    table, _ = frame_of(matrix, np.arange(matrix.shape[0]), np.arange(matrix.shape[1]))
    frame = dd.from_pandas(change(table), npartitions=3)
    folder = tmp_path / "checkpoints"
    with pytest.raises(ValueError, match=message):
        dask_fit(client, frame, checkpoint_every=1, checkpoint_dir=folder)
    assert not folder.exists()


def test_negative_values_are_fine_for_ials(client, matrix):
    table, _ = frame_of(matrix, np.arange(matrix.shape[0]), np.arange(matrix.shape[1]))
    table["value"] = np.where(table.index % 5 == 0, -1.0, table["value"])
    expected = sp.csr_matrix((table["value"], (table["user"], table["item"])),
                             shape=matrix.shape)
    model = dask_fit(client, dd.from_pandas(table, npartitions=2), loss="ials",
                     dtype=np.float64)
    assert_same_model(model, local_fit(expected, loss="ials", dtype=np.float64), rtol=1e-9)


@pytest.mark.parametrize("params, message", [
    (dict(early_stopping=True), "needs validation data"),
    (dict(checkpoint_every=2), "needs checkpoint_dir"),
    (dict(user_blocks=0), "user_blocks"), (dict(initialization="server"), "initialization"),
])
def test_what_the_dask_mode_does_not_take_is_a_clear_error(client, matrix, params, message):
    with pytest.raises(ValueError, match=message):
        dask_fit(client, matrix, **params)


def test_no_client_is_a_clear_error(matrix, monkeypatch):
    monkeypatch.setattr(distributed, "get_client",
                        lambda: (_ for _ in ()).throw(ValueError("No clients found")))
    with pytest.raises(ValueError, match="needs a Dask client"):
        DaskALSSolver(**PARAMS).fit(matrix, show_progress=False)


def test_resuming_from_a_checkpoint_equals_an_uninterrupted_fit(client, matrix, tmp_path):
    params = dict(loss="rgx", alpha=0.05, user_blocks=3, item_blocks=2, iterations=4)
    whole = dask_fit(client, matrix, checkpoint_every=2, checkpoint_dir=tmp_path / "a",
                     **params)
    manifest = json.loads((tmp_path / "a" / "checkpoint.json").read_text())
    assert manifest["sweep"] == 4
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == [
        "checkpoint.json", "sweep-000004"]  # the checkpoint of sweep 2 is gone
    dask_fit(client, matrix, checkpoint_every=2, checkpoint_dir=tmp_path / "b",
             **dict(params, iterations=2))
    resumed = dask_fit(client, matrix, resume=tmp_path / "b", **params)
    assert [record["sweep"] for record in resumed.monitor_.rows] == [3, 3, 4, 4]
    for name in ("user_factors_", "item_factors_", "previous_item_factors_"):
        np.testing.assert_array_equal(getattr(resumed, name).compute(),
                                      getattr(whole, name).compute())
    with pytest.raises(ValueError, match="written by another fit: its factors"):
        dask_fit(client, matrix, resume=tmp_path / "b", **dict(params, factors=5))
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        dask_fit(client, matrix, resume=tmp_path / "c", **params)


@pytest.mark.parametrize("loss", [TOP_K[1], dict(TOP_K[2], top_k_warmup=2)],
                         ids=["damped-gradient", "warmup-past-the-checkpoint"])
def test_resuming_a_fit_with_top_k_weights(client, matrix, tmp_path, loss):
    params = dict(loss=loss, alpha=0.05, user_blocks=3, item_blocks=2, iterations=5)
    whole = dask_fit(client, matrix, **params)
    dask_fit(client, matrix, checkpoint_every=2, checkpoint_dir=tmp_path,
             **dict(params, iterations=2))
    resumed = dask_fit(client, matrix, resume=tmp_path, **params)
    for name in ("user_factors_", "item_factors_"):
        np.testing.assert_array_equal(getattr(resumed, name).compute(),
                                      getattr(whole, name).compute())
    with pytest.raises(ValueError, match="written by another fit: its loss"):
        dask_fit(client, matrix, resume=tmp_path, **dict(params, loss="rgx"))


def test_save_writes_the_blocks_and_the_model_rgals_load_reads(client, matrix, tmp_path):
    model = dask_fit(client, matrix, user_blocks=3, item_blocks=2)
    model.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    users = np.concatenate([np.load(tmp_path / "model" / name)
                            for name in manifest["files"]["user"]])
    np.testing.assert_array_equal(users, model.user_factors_.compute())
    assert manifest["blocks"]["item"] == [[0, 30], [30, 60]]
    loaded = rgals.load(tmp_path / "model")
    local = model.to_local()
    np.testing.assert_array_equal(loaded.item_factors_, local.item_factors_)
    np.testing.assert_array_equal(loaded.recommend(3, N=5)[0], local.recommend(3, N=5)[0])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(tmp_path / "model")
    model.save(tmp_path / "blocks-only", local=False)
    assert not (tmp_path / "blocks-only" / "params.json").exists()


def test_to_local_ranks_as_alssolver_does(client, matrix):
    local = local_fit(matrix, dtype=np.float64)
    gathered = dask_fit(client, matrix, dtype=np.float64, user_blocks=2).to_local()
    assert type(gathered) is rgals.ALSSolver
    np.testing.assert_array_equal(gathered.recommend(np.arange(5), N=4)[0],
                                  local.recommend(np.arange(5), N=4)[0])


def test_a_worker_restarted_mid_fit_changes_nothing(own_cluster, matrix):
    cluster, client = own_cluster
    params = dict(loss="rgx", alpha=0.05, user_blocks=3, item_blocks=3, dtype=np.float64)
    uninterrupted = dask_fit(client, matrix, **params)

    def restart_one(iteration, elapsed, record):
        if iteration == 1:
            client.restart_workers([next(iter(client.scheduler_info()["workers"]))])

    model = dask_fit(client, matrix, callback=restart_one, **params)
    for name in ("user_factors_", "item_factors_"):
        np.testing.assert_array_equal(getattr(model, name).compute(),
                                      getattr(uninterrupted, name).compute())


def test_a_worker_that_leaves_lets_the_fit_finish_and_none_left_fails(own_cluster, matrix,
                                                                      monkeypatch):
    cluster, client = own_cluster
    params = dict(loss="rg2", user_blocks=3, item_blocks=3, dtype=np.float64)
    expected = local_fit(matrix, **{name: value for name, value in params.items()
                                    if "blocks" not in name})

    def retire(count):
        def callback(iteration, elapsed, record):
            if iteration == 1:
                workers = list(client.scheduler_info()["workers"])
                client.retire_workers(workers[:count])
                cluster.scale(2 - count)
        return callback

    model = dask_fit(client, matrix, callback=retire(1), **params)
    assert_same_model(model, expected, rtol=1e-9)
    cluster.scale(2)
    client.wait_for_workers(2)
    monkeypatch.setattr(rgals_dask.cluster, "WORKERLESS_SECONDS", 2.0)
    with pytest.raises(RuntimeError, match="no worker for 2 s"):
        dask_fit(client, matrix, callback=retire(2), **params)


def test_synthetic_frame_is_drawn_by_the_workers_the_same_every_time(client):
    frame = rgals_dask.synthetic_frame(3000, 500, seed=4, partitions=3)
    pairs = frame.compute()
    assert frame.npartitions == 3
    assert pairs.equals(rgals_dask.synthetic_frame(3000, 500, seed=4, partitions=3).compute())
    assert not pairs.equals(rgals_dask.synthetic_frame(3000, 500, seed=5, partitions=3)
                            .compute())
    assert not pairs.duplicated().any() and pairs["user"].nunique() == 3000
    model = dask_fit(client, frame, user_blocks=2, item_blocks=2)
    assert model.user_factors_.shape == (3000, PARAMS["factors"])
    assert model.interaction_totals_.user_counts.sum() == len(pairs)
    with pytest.raises(ValueError, match="n_items must be an integer >= 2"):
        rgals_dask.synthetic_frame(10, 1)


class _Workers:
    """A client stand-in whose workers report the given malloc settings."""

    def __init__(self, *settings):
        self.settings = settings

    def run(self, function):
        return {f"tcp://worker-{k}": value for k, value in enumerate(self.settings)}


def test_workers_without_rgals_malloc_settings_are_warned_about(client):
    from rgals.dask.cluster import WORKER_MALLOC, _malloc_settings, check_worker_malloc
    expected = {name: str(value) for name, value in WORKER_MALLOC.items()}
    # the test cluster starts its workers with worker_settings()
    assert all(found in (None, expected) for found in client.run(_malloc_settings).values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_worker_malloc(client)
        check_worker_malloc(_Workers(expected, None))  # None: not glibc, nothing to check
    dask_default = {"MALLOC_MMAP_THRESHOLD_": None, "MALLOC_TRIM_THRESHOLD_": "65536"}
    with pytest.warns(UserWarning, match="1 of 2 Dask workers run with Dask's malloc "
                                         "settings.*worker_settings"):
        check_worker_malloc(_Workers(expected, dask_default))
    assert rgals_dask.worker_settings() == {
        "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 32 << 20,
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 1 << 30}
