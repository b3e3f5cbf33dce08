"""Serving a DaskALSSolver: recommend & co. on the gathered model, to_cpu, and a Dask
save that `rgals.load` and the command line (`rgals evaluate`, `rgals recommend`) use."""

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")

from test_dask import frame_of

import rgals
from rgals import cli, data
from rgals.dask import DaskALSSolver, estimator
from rgals.data import synthetic

PARAMS = dict(factors=6, regularization=0.02, iterations=4, random_state=0)
SERVING = ("recommend", "similar_items", "similar_users", "recalculate_user",
           "recalculate_item")




@pytest.fixture(scope="module")
def matrix():
    return synthetic(n_users=90, n_items=60, factors=4, mean_activity=9, seed=20261207)


def dask_fit(client, data, **params):
    return DaskALSSolver(**dict(PARAMS, client=client, **params)).fit(data,
                                                                      show_progress=False)


@pytest.fixture(scope="module")
def fitted(client, matrix):
    return dask_fit(client, matrix, user_blocks=3, item_blocks=2)


def assert_same(got, expected):
    for a, b in zip(got, expected) if isinstance(got, tuple) else [(got, expected)]:
        np.testing.assert_array_equal(a, b)


def test_serving_methods_equal_those_of_to_local(fitted, matrix):
    local = fitted.to_local()
    users, items = np.arange(10), np.arange(5)
    for args, kwargs in [((3,), dict(N=5)), ((users,), dict(N=5)),
                         ((users,), dict(N=5, filter_items=[0, 1, 2])),
                         ((users, matrix[users]), dict(N=4, recalculate_user=True)),
                         ((users,), dict(N=4, filter_already_liked_items=False))]:
        assert_same(fitted.recommend(*args, **kwargs), local.recommend(*args, **kwargs))
    # the training rows filter without being given (the fit was given the matrix)
    ids, _ = fitted.recommend(users, N=5)
    for user, row in zip(users, ids):
        assert not set(row) & set(matrix[user].indices)
        assert len(set(row)) == 5
    assert_same(fitted.similar_items(items, N=4), local.similar_items(items, N=4))
    assert_same(fitted.similar_items(7, N=4), local.similar_items(7, N=4))
    assert_same(fitted.similar_users(users, N=4), local.similar_users(users, N=4))
    assert_same(fitted.recalculate_user(users, matrix[users]),
                local.recalculate_user(users, matrix[users]))
    assert_same(fitted.recalculate_item(items, matrix.T.tocsr()[items]),
                local.recalculate_item(items, matrix.T.tocsr()[items]))
    assert_same(fitted.user_norms, local.user_norms)
    assert_same(fitted.item_norms, local.item_norms)
    assert fitted.explain(3, None, 5)[:2] == local.explain(3, None, 5)[:2]
    for got, expected in zip(fitted.recommend_all(N=3, batch_size=40, show_progress=False),
                             local.recommend_all(N=3, batch_size=40, show_progress=False)):
        assert_same(got, expected)


def test_the_model_is_gathered_once_per_fit(client, matrix, monkeypatch):
    model = dask_fit(client, matrix)
    gathered = []
    to_local = model.to_local
    monkeypatch.setattr(model, "to_local", lambda: gathered.append(1) or to_local())
    first = model.similar_items(np.arange(5), N=4)
    model.recommend(np.arange(5), N=4)
    model.similar_users(0, N=3)
    assert len(gathered) == 1
    # a new fit (other data) is served from its own factors, not the cached ones
    model.fit(matrix[:, ::-1].tocsr(), show_progress=False)
    second = model.similar_items(np.arange(5), N=4)
    assert len(gathered) == 2
    assert_same(second, to_local().similar_items(np.arange(5), N=4))
    assert not np.array_equal(first[0], second[0])


def test_factors_above_the_limit_are_a_clear_error(client, matrix, monkeypatch):
    model = dask_fit(client, matrix)
    monkeypatch.setattr(estimator, "LOCAL_BYTES", 1000)
    calls = {"recommend": (3,), "similar_items": (3,), "similar_users": (3,),
             "recalculate_user": (3, matrix[3]), "recalculate_item": (3, matrix.T.tocsr()[3])}
    assert set(calls) == set(SERVING)
    for name, args in calls.items():
        with pytest.raises(ValueError, match=rf"DaskALSSolver\.{name} gathers the factors.*"
                                             r"3,600 bytes.*LOCAL_BYTES \(1,000\).*to_local\(\) "
                                             r"on a machine with enough memory.*save"):
            getattr(model, name)(*args)
    # gathering on purpose still works
    assert model.to_local().user_factors_.shape == (90, PARAMS["factors"])


def test_partial_fits_point_to_the_local_model(fitted, matrix):
    for name in ("partial_fit_users", "partial_fit_items"):
        with pytest.raises(NotImplementedError, match=f"to_local.*{name}"):
            getattr(fitted, name)([0], matrix[[0]])
    local = fitted.to_local().partial_fit_users([0], matrix[[1]])
    np.testing.assert_array_equal(local.user_factors_[0], local.recalculate_user(0, matrix[1]))


def test_an_unfitted_model_is_a_clear_error():
    with pytest.raises(rgals.NotFittedError, match="not fitted"):
        DaskALSSolver(**PARAMS).recommend(0)


def test_to_cpu_and_to_gpu_give_an_alssolver(fitted):
    model = fitted.to_cpu()
    assert type(model) is rgals.ALSSolver and model.backend == "cpu"
    np.testing.assert_array_equal(model.user_factors_, fitted.user_factors_.compute())
    np.testing.assert_array_equal(model.item_factors_, fitted.item_factors_.compute())
    assert_same(model.recommend(np.arange(6), N=5), fitted.recommend(np.arange(6), N=5))
    try:
        rgals.backend.require_gpu()
    except (ImportError, RuntimeError) as error:
        with pytest.raises(type(error), match="backend='gpu'"):
            fitted.to_gpu()
    else:
        on_gpu = fitted.to_gpu()
        assert type(on_gpu) is rgals.ALSSolver and on_gpu.backend == "gpu"
        np.testing.assert_array_equal(rgals.backend.to_host(on_gpu.item_factors_),
                                      fitted.item_factors_.compute())


# -- a Dask-saved model on the command line ---------------------------------------------


def write_pairs(path, matrix):
    """A TSV with a header and the integer ids (the rows) of a Dask fit."""
    coo = matrix.tocoo()
    path.write_text("\n".join(["user\titem"] + [f"{u}\t{i}" for u, i in zip(coo.row, coo.col)])
                    + "\n")
    return path


def run(argv, capsys):
    status = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out


def parse_metrics(out):
    return {line.split()[0]: float(line.split()[1]) for line in out.splitlines()
            if "@" in line.split(" ")[0]}


def parse_lists(out):
    """{user: [items]} from `rgals recommend`'s table."""
    lines = out.strip().splitlines()
    assert lines[0] == "user\trank\titem\tscore"
    lists = {}
    for line in lines[1:]:
        user, rank, item, _ = line.split("\t")
        lists.setdefault(int(user), []).append(int(item))
        assert int(rank) == len(lists[int(user)])
    return lists


@pytest.fixture(scope="module")
def split(matrix):
    train, test = data.holdout_split(matrix, ratio=0.2, seed=1)
    return train, test


@pytest.fixture(scope="module")
def frame_fitted(client, split):
    train, _ = split
    _, frame = frame_of(train, np.arange(train.shape[0]), np.arange(train.shape[1]))
    model = dask_fit(client, frame, user_blocks=3, item_blocks=2)
    # every id has a training pair here: the model has the matrix's shape
    assert model.user_factors_.shape[0] == train.shape[0]
    assert model.item_factors_.shape[0] == train.shape[1]
    return model


def test_a_dataframe_fit_recommends_without_being_given_its_rows(frame_fitted, split):
    train, _ = split
    users = np.arange(12)
    ids, scores = frame_fitted.recommend(users, N=5)
    assert_same((ids, scores), frame_fitted.to_local().recommend(users, N=5))
    for user, row in zip(users, ids):
        assert not set(row) & set(train[user].indices)


def test_a_dask_saved_model_evaluates_and_recommends_from_the_command_line(
        frame_fitted, split, tmp_path, capsys):
    train, test = split
    test_file = write_pairs(tmp_path / "test.tsv", test)
    frame_fitted.save(tmp_path / "dask")
    assert (tmp_path / "dask" / "manifest.json").is_file()
    user_ids, item_ids = data.load_ids(tmp_path / "dask")
    np.testing.assert_array_equal(user_ids, np.arange(train.shape[0]))
    np.testing.assert_array_equal(item_ids, np.arange(train.shape[1]))
    loaded = rgals.load(tmp_path / "dask")
    assert (loaded.user_items_ != train).nnz == 0  # gathered from the user blocks

    # the local model, saved as `rgals fit --out` saves one
    local = frame_fitted.to_local()
    local.save(tmp_path / "local")
    data.Interactions(train, np.arange(train.shape[0]), np.arange(train.shape[1])).save_ids(
        tmp_path / "local")

    metrics = parse_metrics(run(["evaluate", tmp_path / "dask", test_file, "--quiet"], capsys))
    assert metrics and all(0 < value <= 1 for key, value in metrics.items()
                           if not key.startswith("precision"))
    assert metrics == parse_metrics(run(["evaluate", tmp_path / "local", test_file,
                                         "--quiet"], capsys))

    lists = parse_lists(run(["recommend", tmp_path / "dask", 3, 0, "-n", 5], capsys))
    assert list(lists) == [3, 0]
    expected, _ = local.recommend([3, 0], N=5)
    for (user, items), row in zip(lists.items(), expected):
        assert items == list(row)
        assert not set(items) & set(train[user].indices)  # seen items are left out


def test_a_dask_model_saved_without_interactions(frame_fitted, split, tmp_path, capsys):
    train, test = split
    test_file = write_pairs(tmp_path / "test.tsv", test)
    train_file = write_pairs(tmp_path / "train.tsv", train)
    frame_fitted.save(tmp_path / "dask", interactions=False)
    loaded = rgals.load(tmp_path / "dask")
    assert loaded.user_items_ is None
    # the training totals are kept: counts, and the popularity fallback with them
    np.testing.assert_array_equal(loaded.interaction_totals_.user_counts,
                                  np.diff(train.indptr))
    np.testing.assert_array_equal(loaded.interaction_totals_.item_counts,
                                  np.bincount(train.indices, minlength=train.shape[1]))
    # the error does not blame an interactions=False the user may never have passed
    with pytest.raises(ValueError, match="holds no training interactions") as raised:
        loaded.recommend([0, 1], N=3)
    assert "interactions=False" not in str(raised.value)
    assert_same(loaded.recommend([0, 1], train[[0, 1]], N=3),
                frame_fitted.recommend([0, 1], N=3))

    assert cli.main(["evaluate", str(tmp_path / "dask"), str(test_file), "--quiet"]) == 1
    assert "saved without its training interactions: pass --train" in capsys.readouterr().err
    with_train = parse_metrics(run(["evaluate", tmp_path / "dask", test_file, "--train",
                                    train_file, "--quiet"], capsys))
    frame_fitted.save(tmp_path / "whole")
    assert with_train == parse_metrics(run(["evaluate", tmp_path / "whole", test_file,
                                            "--quiet"], capsys))
