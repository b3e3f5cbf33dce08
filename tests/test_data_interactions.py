"""rgals.data.interactions: pairs and frames to a users x items matrix with id maps, test
sets on the training ids, id maps on disk.

Every result is checked against a matrix built independently from the pairs given (scipy
COO over the sorted distinct ids); the helpers here are shared with the reader tests.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from rgals import data


def random_pairs(rng, n_users=30, n_items=20, density=0.2, strings=False, offset=True):
    """Distinct (user, item, value) triples over random sparse ids (not 0-based)."""
    users = np.sort(rng.choice(10 * n_users, n_users, replace=False)) + (1000 if offset else 0)
    items = np.sort(rng.choice(10 * n_items, n_items, replace=False)) + (50 if offset else 0)
    if not offset:
        users, items = np.arange(n_users), np.arange(n_items)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(n_items, size=n_users)] = True  # nobody empty
    mask[rng.integers(n_users, size=n_items), np.arange(n_items)] = True
    rows, cols = np.nonzero(mask)
    order = rng.permutation(rows.size)  # file order is not matrix order
    u, i = users[rows[order]], items[cols[order]]
    if strings:
        u = np.array([f"user-{x}" for x in u])
        i = np.array([f"i{x}" for x in i])
    values = np.round(0.5 + 4.5 * rng.random(rows.size), 3)
    return u, i, values


def expected(users, items, values=None):
    """The matrix and id maps the readers should produce, built without rgals."""
    user_ids, rows = np.unique(users, return_inverse=True)
    item_ids, cols = np.unique(items, return_inverse=True)
    values = np.ones(len(rows)) if values is None else np.asarray(values, dtype=float)
    matrix = sp.coo_matrix((values, (rows, cols)), shape=(user_ids.size, item_ids.size))
    return matrix.toarray(), user_ids, item_ids


def assert_interactions(result, users, items, values=None):
    dense, user_ids, item_ids = expected(users, items, values)
    np.testing.assert_array_equal(result.user_ids, user_ids)
    np.testing.assert_array_equal(result.item_ids, item_ids)
    assert isinstance(result.matrix, sp.csr_matrix) and result.matrix.dtype == np.float64
    assert result.matrix.has_sorted_indices and np.all(result.matrix.data != 0)
    np.testing.assert_allclose(result.matrix.toarray(), dense, rtol=1e-12)


def write_lines(path, lines, end="\n"):
    path.write_text(end.join(lines) + end)
    return path


# ---------------------------------------------------------------------------------------
# Columns, values, duplicates


def test_min_value_and_binary(rng):
    u, i, v = random_pairs(rng)
    kept = v >= 2.5
    assert_interactions(data.from_pairs(u, i, v, min_value=2.5), u[kept], i[kept], v[kept])
    result = data.from_pairs(u, i, v, min_value=2.5, binary=True)
    assert_interactions(result, u[kept], i[kept])
    with pytest.raises(ValueError, match="no interaction has a value >= min_value"):
        data.from_pairs(u, i, v, min_value=100)


def test_duplicates_sum_or_error(tmp_path, rng):
    u, i, v = random_pairs(rng)
    again = rng.choice(u.size, 5, replace=False)
    u2, i2, v2 = (np.concatenate((x, x[again])) for x in (u, i, v))
    assert_interactions(data.from_pairs(u2, i2, v2), u2, i2, v2)  # the COO sum
    with pytest.raises(ValueError, match="5 interactions repeat a .user, item. pair"):
        data.from_pairs(u2, i2, v2, duplicates="error")
    path = write_lines(tmp_path / "d.tsv", [f"{a}\t{b}" for a, b in zip(u2, i2)])
    assert data.read(path).matrix.max() == 2.0
    with pytest.raises(ValueError, match="duplicates='sum'"):
        data.read(path, duplicates="error")
    with pytest.raises(ValueError, match="unknown duplicates 'last'"):
        data.read(path, duplicates="last")


def test_from_dataframe(rng):
    u, i, v = random_pairs(rng, strings=True)
    frame = {"who": u, "what": i.astype(object), "score": v}
    assert_interactions(data.from_dataframe(frame, "who", "what", "score"), u, i, v)
    with pytest.raises(ValueError, match="'user' is not a column.*'who', 'what', 'score'"):
        data.from_dataframe(frame)
    with pytest.raises(TypeError, match="DataFrame"):
        data.from_dataframe([1, 2, 3])
    pandas = pytest.importorskip("pandas")
    assert_interactions(data.from_dataframe(pandas.DataFrame(frame), "who", "what", "score"),
                        u, i, v)


def frame_of(library, columns):
    """The columns {name: array} as a frame of `library`."""
    module = pytest.importorskip(library)
    if library == "pyarrow":
        return module.table(columns)
    return module.DataFrame(columns)


@pytest.mark.parametrize("library", ["pandas", "pyarrow", "polars"])
@pytest.mark.parametrize("strings", [True, False])
def test_from_dataframe_equals_the_tsv_reader(rng, tmp_path, library, strings):
    u, i, v = random_pairs(rng, strings=strings)
    path = tmp_path / "pairs.tsv"
    path.write_text("user\titem\tvalue\n" + "".join(
        f"{a}\t{b}\t{c}\n" for a, b, c in zip(u, i, v)))
    read = data.read(path, value_col="value")
    framed = data.from_dataframe(frame_of(library, {"user": u, "item": i, "value": v}),
                                 value_col="value")
    assert (framed.matrix != read.matrix).nnz == 0
    np.testing.assert_array_equal(framed.user_ids, read.user_ids)
    np.testing.assert_array_equal(framed.item_ids, read.item_ids)
    # a test set on the training ids, as from_pairs takes it
    test = data.from_dataframe(frame_of(library, {"user": u[:5], "item": i[:5]}),
                               users=read.user_ids, items=read.item_ids)
    assert test.matrix.shape == read.matrix.shape and test.matrix.nnz == 5


@pytest.mark.parametrize("library", ["pandas", "pyarrow", "polars"])
def test_frames_with_missing_values_are_clear_errors(library):
    frame = frame_of(library, {"user": ["a", None, "c"], "item": [1, 2, 3],
                               "value": [1.0, 2.0, None]})
    with pytest.raises(ValueError, match="column 'user' holds 1 missing values"):
        data.from_dataframe(frame)
    with pytest.raises(ValueError, match="column 'value' holds 1 missing values"):
        data.from_dataframe(frame, user_col="item", item_col="item", value_col="value")
    with pytest.raises(ValueError, match="'who' is not a column.*'user', 'item', 'value'"):
        data.from_dataframe(frame, user_col="who")


def test_lazy_and_distributed_frames_say_what_to_do():
    polars = pytest.importorskip("polars")
    with pytest.raises(TypeError, match="collect"):
        data.from_dataframe(polars.LazyFrame({"user": [1], "item": [2]}))
    dd = pytest.importorskip("dask.dataframe")
    pandas = pytest.importorskip("pandas")
    frame = dd.from_pandas(pandas.DataFrame({"user": [1], "item": [2]}), npartitions=1)
    with pytest.raises(TypeError, match="DaskALSSolver"):
        data.from_dataframe(frame)


@pytest.mark.parametrize("values,message", [
    ([1.0, np.nan, 2.0], "not finite numbers; the first is nan at position 1"),
    ([1.0, 2.0], "one value per pair"),
    (["a", "b", "c"], "values must be numbers"),
])
def test_from_pairs_bad_values(values, message):
    with pytest.raises((ValueError, TypeError), match=message):
        data.from_pairs([1, 2, 3], [4, 5, 6], values)


def test_from_pairs_bad_ids():
    with pytest.raises(ValueError, match="user ids must be integers or strings.*1.5"):
        data.from_pairs([1, 1.5], [1, 2])
    with pytest.raises(ValueError, match="no missing values"):
        data.from_pairs(np.array([1, None], dtype=object), [1, 2])
    with pytest.raises(ValueError, match="3 user ids but 2 item ids"):
        data.from_pairs([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="no interactions"):
        data.from_pairs([], [])


# ---------------------------------------------------------------------------------------
# A test set on the training ids


def test_test_file_on_training_ids(tmp_path, rng):
    u, i, _ = random_pairs(rng, n_users=40, n_items=25)
    in_test = rng.random(u.size) < 0.3
    train = data.from_pairs(u[~in_test], i[~in_test])
    # make sure some ids were never seen: a new user, a new item, and both
    test_u = np.concatenate((u[in_test], [1, u[0], 2]))
    test_i = np.concatenate((i[in_test], [i[0], 3, 4]))
    path = write_lines(tmp_path / "test.tsv", ["user\titem"] +
                       [f"{a}\t{b}" for a, b in zip(test_u, test_i)])
    new_users = np.setdiff1d(test_u, train.user_ids).size
    new_items = np.setdiff1d(test_i, train.item_ids).size
    seen = np.isin(test_u, train.user_ids) & np.isin(test_i, train.item_ids)
    with pytest.raises(ValueError, match=rf"{new_users} user ids \(.*\) and {new_items} item "
                                         rf"ids \(.*\) were never seen in training; "
                                         rf"{(~seen).sum()} of {seen.size} interactions") as error:
        data.read(path, users=train.user_ids, items=train.item_ids)
    assert "unknown='drop'" in str(error.value)
    with pytest.warns(UserWarning, match=f"dropped {(~seen).sum()} of {seen.size}"):
        test = data.read(path, users=train.user_ids, items=train.item_ids, unknown="drop")
    assert test.matrix.shape == train.matrix.shape
    np.testing.assert_array_equal(test.user_ids, train.user_ids)
    rows = np.searchsorted(train.user_ids, test_u[seen])
    cols = np.searchsorted(train.item_ids, test_i[seen])
    want = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=train.matrix.shape)
    np.testing.assert_array_equal(test.matrix.toarray(), want.toarray())


def test_ids_match_across_int_and_string(tmp_path):
    path = write_lines(tmp_path / "t.csv", ["7,3", "9,3", "8,4"])
    numbers = data.read(path, users=np.array([9, 7, 8]), items=np.array([4, 3]))
    texts = data.read(path, users=np.array(["9", "7", "8"]), items=np.array(["4", "3"]))
    back = data.from_pairs(np.array(["07", "9", "8"]), np.array(["3", "3", "4"]),
                           users=np.array([9, 7, 8]), items=np.array([4, 3]))
    for result in (numbers, texts, back):  # rows follow users, columns follow items
        np.testing.assert_array_equal(result.matrix.toarray(), [[0, 1], [0, 1], [1, 0]])


def test_reference_ids_must_be_unique(tmp_path):
    with pytest.raises(ValueError, match="users repeats 1 ids"):
        data.from_pairs([1], [2], users=[1, 1])


# ---------------------------------------------------------------------------------------
# Id maps on disk


@pytest.mark.parametrize("strings", [False, True])
def test_save_and_load_ids(tmp_path, rng, strings):
    u, i, _ = random_pairs(rng, strings=strings)
    interactions = data.from_pairs(u, i)
    interactions.save_ids(tmp_path / "model")
    user_ids, item_ids = data.load_ids(tmp_path / "model")
    np.testing.assert_array_equal(user_ids, interactions.user_ids)
    np.testing.assert_array_equal(item_ids, interactions.item_ids)
    assert user_ids.dtype.kind == ("U" if strings else "i")
    before = (tmp_path / "model" / "user_ids.npy").read_bytes()
    other = data.from_pairs(u[:5], i[:5])
    with pytest.raises(FileExistsError, match="user_ids.npy, item_ids.npy.*overwrite=True"):
        other.save_ids(tmp_path / "model")
    assert (tmp_path / "model" / "user_ids.npy").read_bytes() == before
    other.save_ids(tmp_path / "model", overwrite=True)
    np.testing.assert_array_equal(data.load_ids(tmp_path / "model")[0], other.user_ids)
    assert not [p for p in (tmp_path / "model").iterdir() if p.name.startswith(".")]
    with pytest.raises(FileNotFoundError, match="missing user_ids.npy, item_ids.npy"):
        data.load_ids(tmp_path)
