"""rgals.data: files and frames to a users x items matrix with id maps, splits, synthetic data.

Every reader is checked against a matrix built independently from the pairs written
(scipy COO over the sorted distinct ids).
"""

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import scipy.sparse.linalg

from rgals import data

HEALTH = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon2014-health"


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
# Round trips


def test_tsv_with_header_and_values(tmp_path, rng):
    u, i, v = random_pairs(rng)
    path = write_lines(tmp_path / "train.tsv", ["user_procid\titem_procid\tweight"] +
                       [f"{a}\t{b}\t{c}" for a, b, c in zip(u, i, v)])
    assert_interactions(data.read(path, value_col=2), u, i, v)
    assert_interactions(data.read(path), u, i)  # no value column: every value is 1
    assert data.read(path).user_ids.dtype == np.int64


def test_csv_without_header_string_ids(tmp_path, rng):
    u, i, v = random_pairs(rng, strings=True)
    path = write_lines(tmp_path / "pairs.csv", [f"{a},{b},{c}" for a, b, c in zip(u, i, v)])
    result = data.read(path, value_col=2)
    assert_interactions(result, u, i, v)
    assert result.user_ids.dtype.kind == "U"
    assert list(result.user_ids) == sorted(set(u))


def test_string_ids_under_a_header(tmp_path, rng):
    u, i, _ = random_pairs(rng, strings=True)
    path = write_lines(tmp_path / "train.tsv", ["user\titem"] +
                       [f"{a}\t{b}" for a, b in zip(u, i)])
    assert_interactions(data.read(path), u, i)


def test_dense_ids_map_to_themselves(tmp_path, rng):
    u, i, _ = random_pairs(rng, offset=False)
    path = write_lines(tmp_path / "pairs.txt", [f"{a} {b}" for a, b in zip(u, i)])
    result = data.read(path)
    np.testing.assert_array_equal(result.user_ids, np.arange(u.max() + 1))
    np.testing.assert_array_equal(result.item_ids, np.arange(i.max() + 1))
    direct = sp.coo_matrix((np.ones(u.size), (u, i))).toarray()
    np.testing.assert_array_equal(result.matrix.toarray(), direct)


def test_movielens_dat(tmp_path, rng):
    u, i, _ = random_pairs(rng)
    ratings = rng.integers(1, 6, size=u.size)
    path = write_lines(tmp_path / "ratings.dat", [f"{a}::{b}::{r}::{978300000 + k}"
                                                 for k, (a, b, r) in enumerate(zip(u, i, ratings))])
    assert_interactions(data.read(path), u, i, ratings)
    liked = ratings >= 4
    assert_interactions(data.read(path, min_value=4, binary=True), u[liked], i[liked])


def test_movielens_csv(tmp_path, rng):
    u, i, _ = random_pairs(rng)
    ratings = rng.integers(1, 11, size=u.size) / 2
    path = write_lines(tmp_path / "ratings.csv", ["userId,movieId,rating,timestamp"] +
                       [f"{a},{b},{r:.1f},{1147880044 + k}"
                        for k, (a, b, r) in enumerate(zip(u, i, ratings))])
    assert_interactions(data.read(path), u, i, ratings)
    same = data.read(path, format="pairs", value_col="rating")
    np.testing.assert_array_equal(same.matrix.toarray(), data.read(path).matrix.toarray())


def test_lightgcn(tmp_path, rng):
    u, i, _ = random_pairs(rng, n_users=40)
    lines = []
    for user in np.unique(u):
        lines.append(" ".join(map(str, [user, *rng.permutation(i[u == user])])))
    lines.insert(3, "77")  # a user with no items is skipped
    path = write_lines(tmp_path / "train.txt", lines)
    assert_interactions(data.read(path), u, i)
    assert_interactions(data.read(path, format="lightgcn"), u, i)
    assert 77 not in data.read(path).user_ids


def test_mtx_and_npz_keep_shape(tmp_path, rng):
    matrix = sp.random(15, 11, density=0.3, random_state=np.random.RandomState(7)).tocsr()
    matrix.data = np.round(rng.random(matrix.nnz) + 0.5, 4)
    matrix = sp.csr_matrix(np.pad(matrix.toarray(), ((0, 2), (0, 3))))  # empty last rows
    scipy.io.mmwrite(tmp_path / "m.mtx", matrix)
    sp.save_npz(tmp_path / "m.npz", matrix)
    for name in ("m.mtx", "m.npz"):
        result = data.read(tmp_path / name)
        assert result.matrix.shape == (17, 14)
        np.testing.assert_array_equal(result.user_ids, np.arange(17))
        np.testing.assert_array_equal(result.item_ids, np.arange(14))
        np.testing.assert_allclose(result.matrix.toarray(), matrix.toarray())


def test_messy_file_reads_like_a_clean_one(tmp_path, rng):
    """CRLF ends, blank lines, spaces around fields: the line scan gives the fast result."""
    u, i, v = random_pairs(rng)
    clean = write_lines(tmp_path / "clean.csv", [f"{a},{b},{c}" for a, b, c in zip(u, i, v)])
    lines = [f" {a} , {b},{c} " for a, b, c in zip(u, i, v)]
    lines.insert(int(rng.integers(1, len(lines))), "")
    messy = write_lines(tmp_path / "messy.csv", lines, end="\r\n")
    for path in (clean, messy):
        assert_interactions(data.read(path, value_col=2), u, i, v)


@pytest.mark.parametrize("sep,strings,values", [("\t", False, True), (",", True, True),
                                                 (" ", False, False), ("::", True, False),
                                                 (";", False, True)])
def test_fast_path_matches_line_scan(tmp_path, rng, monkeypatch, sep, strings, values):
    u, i, v = random_pairs(rng, strings=strings)
    columns = [u, i] + ([v] if values else [])
    path = write_lines(tmp_path / "p.dat", [sep.join(map(str, row)) for row in zip(*columns)])
    options = dict(sep=sep, value_col=2 if values else None)
    fast = data.read(path, **options)
    monkeypatch.setattr(data, "_fast_columns", lambda *args: None)
    scanned = data.read(path, **options)
    for result in (fast, scanned):
        assert_interactions(result, u, i, v if values else None)


def test_utf8_ids_and_other_encodings(tmp_path):
    path = tmp_path / "names.tsv"
    path.write_text("user\titem\nzoë\tcafé 1\nzoë\tthé 2\nāda\tcafé 1\n", encoding="utf-8")
    result = data.read(path, header=True)
    assert list(result.user_ids) == ["zoë", "āda"]  # code point order
    assert list(result.item_ids) == ["café 1", "thé 2"]
    np.testing.assert_array_equal(result.matrix.toarray(), [[1, 1], [1, 0]])
    path.write_text("user\titem\nzoë\tcafé\n", encoding="latin-1")
    with pytest.raises(ValueError, match="names.tsv, line 2: not UTF-8"):
        data.read(path)


@pytest.mark.parametrize("lines,header", [
    (["user\titem", "1\t2"], True),              # names above numbers
    (["user\titem", "u1\ti2"], True),            # names above ids with digits
    (["u1\ti1", "u1\ti2"], False),               # ids all the way
    (["1\t2\trating", "1\t3\t4.5"], True),      # a value must be a number
    (["alice\tbook", "bob\tpen"], False),        # plain words: header=True must be given
    (["3\t4"], False),
])
def test_header_detection(tmp_path, lines, header):
    path = write_lines(tmp_path / "h.tsv", lines)
    value_col = 2 if "rating" in lines[0] else None
    result = data.read(path, value_col=value_col)
    assert result.matrix.sum() == (len(lines) - header if value_col is None else 4.5)


# ---------------------------------------------------------------------------------------
# Columns, values, duplicates


def test_columns_by_name_and_position(tmp_path, rng):
    u, i, v = random_pairs(rng)
    path = write_lines(tmp_path / "log.tsv", ["time\titem\tuser\trating"] +
                       [f"{k}\t{b}\t{a}\t{c}" for k, (a, b, c) in enumerate(zip(u, i, v))])
    by_name = data.read(path, user_col="user", item_col="item", value_col="rating")
    by_position = data.read(path, user_col=2, item_col=1, value_col=3)
    for result in (by_name, by_position):
        assert_interactions(result, u, i, v)


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
# Bad files


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        data.read(tmp_path / "nope.tsv")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        data.read(tmp_path)


@pytest.mark.parametrize("bad,problem", [
    ("{u}\t{i}\t3", "expected 2 tab-separated fields, found 3"),
    ("{u}", "expected 2 tab-separated fields, found 1"),
    ("\t{i}", "empty user id"),
])
def test_unreadable_line_is_reported(tmp_path, rng, bad, problem):
    u, i, _ = random_pairs(rng)
    lines = [f"{a}\t{b}" for a, b in zip(u, i)]
    at = int(rng.integers(1, len(lines)))
    lines[at] = bad.format(u=u[0], i=i[0])
    path = write_lines(tmp_path / "broken.tsv", ["user\titem"] + lines)
    with pytest.raises(ValueError, match=rf"broken.tsv, line {at + 2}: {problem}"):
        data.read(path)


@pytest.mark.parametrize("value,problem", [("abc", "'abc' .field 2. is not a number"),
                                           ("nan", "'nan' .field 2. is not a finite number"),
                                           ("-inf", "'-inf' .field 2. is not a finite number")])
def test_bad_value_is_reported(tmp_path, rng, value, problem):
    u, i, v = random_pairs(rng)
    lines = [f"{a},{b},{c}" for a, b, c in zip(u, i, v)]
    at = int(rng.integers(len(lines)))
    lines[at] = f"{u[0]},{i[0]},{value}"
    path = write_lines(tmp_path / "v.csv", lines)
    with pytest.raises(ValueError, match=rf"v.csv, line {at + 1}: value {problem}"):
        data.read(path, value_col=2)


def test_bad_format_and_columns(tmp_path):
    path = write_lines(tmp_path / "x.tsv", ["user\titem", "1\t2", "3\t4"])
    with pytest.raises(ValueError, match="unknown format 'parquet'; use one of .*'pairs'"):
        data.read(path, format="parquet")
    with pytest.raises(ValueError, match="'rating' is not in the header; its columns are "
                                         "'user', 'item'"):
        data.read(path, value_col="rating")
    with pytest.raises(ValueError, match="value_col=5 is out of range"):
        data.read(path, value_col=5)
    with pytest.raises(ValueError, match="header=False"):
        data.read(path, user_col="user", header=False)
    with pytest.raises(ValueError, match="user_col and item_col are both 0"):
        data.read(path, item_col=0)
    with pytest.raises(ValueError, match="do not apply to 'npz'"):
        data.read(path, format="npz", value_col=2)
    binary = tmp_path / "x.bin"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match="cannot tell the format.*format="):
        data.read(binary)
    with pytest.raises(ValueError, match="is not a scipy.sparse .npz"):
        data.read(binary, format="npz")


def test_empty_files(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.tsv is empty"):
        data.read(empty)
    header_only = write_lines(tmp_path / "h.tsv", ["user\titem"])
    with pytest.raises(ValueError, match="header .* but no interactions"):
        data.read(header_only)


# ---------------------------------------------------------------------------------------
# Splits


@pytest.fixture
def matrix(rng):
    dense = (rng.random((60, 40)) < 0.15) * rng.integers(1, 5, (60, 40)).astype(float)
    dense[0] = 0
    dense[1, :] = 0
    dense[1, 3] = 2.0  # a user with a single interaction
    return sp.csr_matrix(dense)


def check_partition(matrix, train, test):
    assert train.shape == test.shape == matrix.shape
    assert train.multiply(test).nnz == 0  # disjoint
    np.testing.assert_array_equal((train + test).toarray(), matrix.toarray())
    per_user = np.diff(matrix.indptr)
    train_count = np.diff(train.indptr)
    assert np.all(train_count[per_user > 0] >= 1)
    return per_user, np.diff(test.indptr)


def test_holdout_split(matrix):
    for ratio in (0.2, 0.5, 0.9):
        train, test = data.holdout_split(matrix, ratio=ratio, seed=3)
        per_user, held = check_partition(matrix, train, test)
        want = np.clip(np.floor(ratio * per_user + 0.5), per_user >= 2, np.maximum(per_user - 1, 0))
        np.testing.assert_array_equal(held, want)
    again = data.holdout_split(matrix, ratio=0.9, seed=3)
    np.testing.assert_array_equal(again[1].toarray(), test.toarray())
    other = data.holdout_split(matrix, ratio=0.9, seed=4)
    assert (other[1] != test).nnz > 0


def test_leave_k_out_and_validation(matrix):
    for k in (1, 3):
        train, test = data.leave_k_out(matrix, k=k, seed=1)
        per_user, held = check_partition(matrix, train, test)
        np.testing.assert_array_equal(held, np.minimum(k, np.maximum(per_user - 1, 0)))
    fit, validation = data.validation_split(matrix)
    per_user, held = check_partition(matrix, fit, validation)
    np.testing.assert_array_equal(
        held, np.clip(np.floor(0.1 * per_user + 0.5), per_user >= 2, np.maximum(per_user - 1, 0)))
    assert np.all(held[per_user >= 2] >= 1)


def test_split_errors(matrix):
    for ratio in (0, 1, 1.5, -0.1, "0.2"):
        with pytest.raises(ValueError, match="ratio must be a number between 0 and 1"):
            data.holdout_split(matrix, ratio=ratio)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        data.leave_k_out(matrix, k=0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        data.holdout_split(matrix, seed=1.5)
    singles = sp.eye(5, 7, format="csr")
    with pytest.raises(ValueError, match="holds nothing out"):
        data.holdout_split(singles)
    with pytest.raises(TypeError, match="scipy.sparse"):
        data.leave_k_out([[1, 2]])


# ---------------------------------------------------------------------------------------
# Synthetic data


def test_synthetic():
    matrix = data.synthetic(n_users=400, n_items=300, seed=5)
    assert isinstance(matrix, sp.csr_matrix) and matrix.shape == (400, 300)
    assert np.all(matrix.data == 1.0) and matrix.has_sorted_indices
    per_user = np.diff(matrix.indptr)
    assert per_user.min() >= 2 and per_user.max() <= 300
    assert 12 < per_user.mean() < 28
    popularity = np.sort(np.asarray(matrix.sum(axis=0)).ravel())[::-1]
    assert popularity[:30].sum() > 0.3 * popularity.sum()
    assert (data.synthetic(n_users=400, n_items=300, seed=5) != matrix).nnz == 0
    assert (data.synthetic(n_users=400, n_items=300, seed=6) != matrix).nnz > 0


def test_synthetic_structure_is_learnable():
    """A rank-8 SVD of the training part ranks held-out items far better than popularity."""
    train, test = data.holdout_split(data.synthetic(600, 300, factors=8, seed=2), seed=0)
    u, s, vt = scipy.sparse.linalg.svds(train, k=8, random_state=0)
    scores = {"svd": (u * s) @ vt, "popularity": np.tile(np.asarray(train.sum(0)), (600, 1))}
    recall = {}
    for name, score in scores.items():
        score = np.where(train.toarray() > 0, -np.inf, score)
        top = np.argsort(-score, axis=1)[:, :10]
        hits = np.take_along_axis(test.toarray(), top, axis=1).sum(axis=1)
        held = np.diff(test.indptr)
        recall[name] = np.mean(hits[held > 0] / held[held > 0])
    assert recall["svd"] > 1.25 * recall["popularity"], recall


def test_synthetic_errors():
    with pytest.raises(ValueError, match="n_items must be an integer >= 2"):
        data.synthetic(n_items=1)
    with pytest.raises(ValueError, match="mean_activity=50.0 exceeds n_items=10"):
        data.synthetic(n_items=10, mean_activity=50.0)


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


# ---------------------------------------------------------------------------------------
# The real data


@pytest.mark.skipif(not (HEALTH / "train.tsv").exists(), reason="shared data not present")
def test_health_train():
    result = data.read(HEALTH / "train.tsv")
    assert result.matrix.shape == (1974, 1200) and result.matrix.nnz == 37784
    np.testing.assert_array_equal(result.user_ids, np.arange(1974))
