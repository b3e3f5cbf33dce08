"""rgals.dask checkpoints and inputs: resume refuses a checkpoint of other data or other
parameters, checkpoint_dir is checked before any work, a damaged checkpoint.json or block
file is a clear error naming it, and an explicit value_col must exist. On a LocalCluster
of two worker processes, as tests/test_dask.py."""

import json
import os
import shutil

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")

from rgals.dask import DaskALSSolver  # noqa: E402
from rgals.dask import checkpoints, layout  # noqa: E402
from rgals.data import synthetic  # noqa: E402

PARAMS = dict(factors=6, regularization=0.02, iterations=4, random_state=0, user_blocks=3,
              item_blocks=2, loss="rgx", alpha=0.05)




@pytest.fixture(scope="module")
def matrix():
    return synthetic(n_users=90, n_items=60, factors=4, mean_activity=9, seed=20261202)


def dask_fit(client, data, resume=None, **params):
    settings = dict(PARAMS, client=client)
    settings.update(params)
    return DaskALSSolver(**settings).fit(data, resume=resume, show_progress=False)


def frame_of(matrix, partitions=3, value_col="value"):
    coo = matrix.tocoo()
    table = pd.DataFrame({"user": coo.row, "item": coo.col})
    if value_col is not None:
        table[value_col] = coo.data
    return dd.from_pandas(table, npartitions=partitions)


@pytest.fixture(scope="module")
def saved(client, matrix, tmp_path_factory):
    """A checkpoint after sweep 2 of PARAMS's fit of `matrix`."""
    directory = tmp_path_factory.mktemp("saved")
    dask_fit(client, matrix, checkpoint_every=2, checkpoint_dir=directory,
             **dict(PARAMS, iterations=2))
    return directory


@pytest.fixture
def copy(saved, tmp_path):
    """A copy of `saved` to damage."""
    return shutil.copytree(saved, tmp_path / "copy")


def factors(model):
    return [getattr(model, name).compute()
            for name in ("user_factors_", "item_factors_", "previous_item_factors_")]


# -- resume refuses other data and other parameters -------------------------------------

def test_resume_continues_the_same_fit_exactly(client, matrix, saved, tmp_path,
                                               monkeypatch):
    manifest = json.loads((saved / "checkpoint.json").read_text())
    assert manifest["data"]["nnz"] == matrix.nnz
    assert manifest["cg_steps"] == 3 and manifest["solver"] == "auto"
    whole = dask_fit(client, matrix)
    resumed = dask_fit(client, matrix, resume=saved)
    assert [record["sweep"] for record in resumed.monitor_.rows] == [3, 3, 4, 4]
    for got, expected in zip(factors(resumed), factors(whole)):
        np.testing.assert_array_equal(got, expected)
    # the same data as a DataFrame, or with blocks of local columns, hashes alike
    dask_fit(client, frame_of(matrix), resume=saved)
    monkeypatch.setattr(layout, "TOUCHED_AT_MOST", 1.0)
    dask_fit(client, matrix, checkpoint_every=2, checkpoint_dir=tmp_path / "local",
             broadcast_bytes=0, iterations=2)
    local = json.loads((tmp_path / "local" / "checkpoint.json").read_text())
    assert local["data"] == manifest["data"]


def moved_pair(matrix):
    """`matrix` with one pair moved to an item its user has not got: same shape, nnz and
    row sums (synthetic's values are all 1)."""
    lil = matrix.tolil()
    user = int(np.argmax(np.diff(matrix.indptr) > 0))
    item = int(lil.rows[user][0])
    free = next(column for column in range(matrix.shape[1]) if column not in lil.rows[user])
    lil[user, free], lil[user, item] = lil[user, item], 0
    moved = lil.tocsr()
    moved.eliminate_zeros()
    return moved


def scaled_value(matrix):
    changed = matrix.copy()
    changed.data[0] = 2.0
    return changed


@pytest.mark.parametrize("change, differs, same", [
    (lambda m: synthetic(n_users=90, n_items=60, factors=4, mean_activity=9, seed=7),
     "pairs hash", None),
    (scaled_value, "row sums hash; pairs hash", None),
    (moved_pair, "its data differs (pairs hash)", "row sums"),
], ids=["other-draw", "one-value", "one-pair-moved"])
def test_resume_refuses_other_data_of_the_same_shape(client, matrix, saved, change,
                                                     differs, same):
    other = change(matrix)
    assert other.shape == matrix.shape
    with pytest.raises(ValueError, match="written by another fit: its data differs") as error:
        dask_fit(client, other, resume=saved)
    assert differs in str(error.value)
    assert same is None or same not in str(error.value)
    assert "its shape" not in str(error.value)


@pytest.mark.parametrize("params, message", [
    (dict(solver="cg"), "its solver is 'auto', this fit's 'cg'"),
    (dict(cg_steps=1), "its cg_steps is 3, this fit's 1"),
    (dict(cg_tolerance=1e-3), "its cg_tolerance is 0.0, this fit's 0.001"),
    (dict(dtype=np.float64), "its dtype is 'float32', this fit's 'float64'"),
    (dict(factors=5), "its factors is 6, this fit's 5"),
    (dict(alpha=0.1), "its loss's alpha is 0.05, this fit's 0.1"),
    (dict(regularization=0.03), "its loss's regularization is 0.02, this fit's 0.03"),
    (dict(loss="rg2"), "its loss is {'name': 'rgx'"),
    (dict(user_blocks=2), "its blocks are 3 user x 2 item blocks, this fit's 2 x 2"),
])
def test_resume_refuses_other_parameters(client, matrix, saved, params, message):
    with pytest.raises(ValueError, match="written by another fit") as error:
        dask_fit(client, matrix, resume=saved, **params)
    assert message in str(error.value)
    assert "data differs" not in str(error.value)  # the hashes are per block: not compared


def test_every_difference_is_named(client, matrix, saved):
    with pytest.raises(ValueError) as error:
        dask_fit(client, scaled_value(matrix), resume=saved, cg_steps=1)
    assert (f"the checkpoint in {saved} was written by another fit: its cg_steps is 3, this "
            "fit's 1; its data differs (row sums hash; pairs hash)") in str(error.value)


# -- checkpoint_dir is checked first ----------------------------------------------------

def fit_into(client, directory):
    # not data: the layout would fail with a TypeError, so a ValueError about the
    # directory says it was checked first
    return dask_fit(client, object(), checkpoint_every=1, checkpoint_dir=directory)


def test_a_checkpoint_dir_under_a_file_fails_before_any_work(client, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="cannot be created: .*file is a file") as error:
        fit_into(client, tmp_path / "file" / "checkpoints")
    assert str(tmp_path / "file" / "checkpoints") in str(error.value)
    with pytest.raises(ValueError, match="exists and is not a directory"):
        fit_into(client, tmp_path / "file")


def test_a_read_only_checkpoint_dir_fails_before_any_work(client, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("permissions do not bind this user (root)")
        for path in (folder, folder / "checkpoints"):
            with pytest.raises(ValueError, match="not writable") as error:
                fit_into(client, path)
            assert str(path) in str(error.value)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_a_directory_that_refuses_files_is_a_clear_error(tmp_path, monkeypatch):
    # what a read-only folder does, for users permissions do not bind (root)
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoints.tempfile, "TemporaryFile", refuse)
    with pytest.raises(ValueError, match=f"would be created in {tmp_path}, which is not "
                                         r"writable \(Permission denied\)"):
        checkpoints.check_checkpoint_dir(tmp_path / "a" / "b")


def test_checking_a_checkpoint_dir_creates_nothing(tmp_path):
    checkpoints.check_checkpoint_dir(tmp_path / "a" / "b")
    checkpoints.check_checkpoint_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []


# -- a damaged checkpoint is a clear error naming the file -------------------------------

def edit(key, value):
    def change(manifest, directory):
        manifest[key] = value
    return change


def first_block(manifest, directory, name):
    manifest["files"]["user"][0] = name(directory)


def outside_block(directory):
    """A real block file outside the checkpoint: a read would succeed."""
    outside = directory.parent / "outside.npy"
    shutil.copy(directory / json.loads((directory / "checkpoint.json").read_text())[
        "files"]["user"][0], outside)
    return outside


def linked_out(directory):
    link = directory / "sweep-000002" / "link.npy"
    link.symlink_to(outside_block(directory))
    return "sweep-000002/link.npy"


@pytest.mark.parametrize("change, message", [
    ("{not json", "not valid JSON"),
    (edit("sweep", "3"), "its sweep is '3', not a whole number"),
    (edit("sweep", -3), "its sweep is -3, not a whole number"),
    (edit("sweep", 10 ** 9), "past this fit's iterations=4"),
    (edit("files", ["sweep-000002/user-00000.npy"]), 'its "files" is not'),
    (edit("files", {"user": [1, 2, 3], "item": [], "previous": []}), 'its "files" is not'),
    (edit("blocks", "3x2"), 'its "blocks" is not'),
    (lambda manifest, directory: manifest.pop("data"), "it has no data"),
    (edit("format", "other"), "not an rgals Dask checkpoint"),
    (lambda m, d: first_block(m, d, lambda d: str(outside_block(d))), "not a path inside"),
    (lambda m, d: first_block(m, d, lambda d: (outside_block(d), "../outside.npy")[1]),
     "not a path inside"),
    (lambda m, d: first_block(m, d, linked_out), "a link to .*outside.npy outside"),
    (edit("top_k", {"files": {"weights": ["w.npy"]}, "lengths": {}}),
     'its "top_k" is not the top-K state'),
    (edit("top_k", {"sweeps": 2, "refreshed": False, "files": {}, "lengths": {},
                    "user_sums": None}), "top-K state does not match its loss"),
], ids=["json", "sweep-string", "sweep-negative", "sweep-huge", "files-list",
        "files-ints", "blocks", "no-data", "format", "absolute", "dot-dot", "symlink",
        "top-k-malformed", "top-k-without-top-k-loss"])
def test_a_damaged_checkpoint_json_is_a_clear_error(client, matrix, copy, change, message):
    path = copy / "checkpoint.json"
    if isinstance(change, str):
        path.write_text(change)
    else:
        manifest = json.loads(path.read_text())
        change(manifest, copy)
        path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=message) as error:
        dask_fit(client, matrix, resume=copy)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.unlink(), "cannot read the checkpoint block"),
    (lambda path: path.write_bytes(b"not an array"), "cannot read the checkpoint block"),
    (lambda path: np.save(path, np.zeros((2, 2), np.float32)), r"shape \(2, 2\)"),
    (lambda path: np.save(path, np.load(path).astype(np.float64)), "holds a float64 array"),
], ids=["missing", "not-npy", "shape", "dtype"])
def test_a_missing_or_wrong_block_file_is_a_clear_error_naming_it(client, matrix, copy,
                                                                  damage, message):
    manifest = json.loads((copy / "checkpoint.json").read_text())
    block = copy / manifest["files"]["item"][1]
    damage(block)
    with pytest.raises(ValueError, match=message) as error:
        dask_fit(client, matrix, resume=copy)  # read on a worker
    assert str(block) in str(error.value)


# -- value_col ----------------------------------------------------------------------------

def test_an_explicit_value_col_must_exist(client, matrix):
    with pytest.raises(ValueError, match="no column 'weight' .*pass value_col="):
        DaskALSSolver(**dict(PARAMS, client=client)).fit(frame_of(matrix), value_col="weight",
                                                         show_progress=False)
    with pytest.raises(ValueError, match="no column 'value'"):
        DaskALSSolver(**dict(PARAMS, client=client)).fit(
            frame_of(matrix, value_col=None), value_col="value", show_progress=False)


def test_value_col_names_the_values_and_defaults_to_value_if_present(client, matrix):
    changed = matrix.copy()
    changed.data = 1.0 + np.arange(changed.nnz) % 3  # values that are not all 1
    expected = factors(dask_fit(client, frame_of(changed)))
    named = DaskALSSolver(**dict(PARAMS, client=client)).fit(
        frame_of(changed, value_col="weight"), value_col="weight", show_progress=False)
    for got, want in zip(factors(named), expected):
        np.testing.assert_array_equal(got, want)
    # without the column, and by default, every pair counts 1
    ones = factors(dask_fit(client, frame_of(changed, value_col=None)))
    assert not np.array_equal(ones[0], expected[0])
    for got, want in zip(ones, factors(dask_fit(client, frame_of(matrix)))):
        np.testing.assert_array_equal(got, want)
