"""rgals.data.readers: files to a users x items matrix with id maps.

Every reader is checked against a matrix built independently from the pairs written
(scipy COO over the sorted distinct ids).
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from rgals import data
from rgals.data import readers
from test_data_interactions import assert_interactions, random_pairs, write_lines

# the shared datasets: beside the repository, or where RGALS_DATA says (as bench/ reads them)
HEALTH = Path(os.environ.get("RGALS_DATA", Path(__file__).resolve().parents[2] / "shared" /
                             "data")) / "amazon2014-health"


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
    monkeypatch.setattr(readers, "_fast_columns", lambda *args: None)
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = data.read(path, value_col=value_col)
    assert result.matrix.sum() == (len(lines) - header if value_col is None else 4.5)
    # only the undecidable case (a first line of words never seen again) is flagged
    flagged = [w for w in caught if "was read as an interaction" in str(w.message)]
    assert len(flagged) == (lines[0] == "alice\tbook")


# ---------------------------------------------------------------------------------------
# Columns


def test_columns_by_name_and_position(tmp_path, rng):
    u, i, v = random_pairs(rng)
    path = write_lines(tmp_path / "log.tsv", ["time\titem\tuser\trating"] +
                       [f"{k}\t{b}\t{a}\t{c}" for k, (a, b, c) in enumerate(zip(u, i, v))])
    by_name = data.read(path, user_col="user", item_col="item", value_col="rating")
    by_position = data.read(path, user_col=2, item_col=1, value_col=3)
    for result in (by_name, by_position):
        assert_interactions(result, u, i, v)


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
# The real data


@pytest.mark.skipif(not (HEALTH / "train.tsv").exists(), reason="shared data not present")
def test_health_train():
    result = data.read(HEALTH / "train.tsv")
    assert result.matrix.shape == (1974, 1200) and result.matrix.nnz == 37784
    np.testing.assert_array_equal(result.user_ids, np.arange(1974))


@pytest.mark.parametrize("stray", ["x17", "1.5", "u"])
@pytest.mark.parametrize("sep, header", [("\t", True), (",", False), (" ", False)])
def test_one_stray_id_in_an_integer_column_names_its_line(tmp_path, rng, stray, sep, header):
    """Without this, one stray value turned every id into text and reordered the rows."""
    users = rng.integers(0, 40, size=60)
    items = rng.integers(0, 30, size=60)
    lines = [f"{u}{sep}{i}" for u, i in zip(users, items)]
    at = int(rng.integers(len(lines)))
    lines[at] = f"{users[at]}{sep}{stray}"
    path = write_lines(tmp_path / "ids.txt", (["user" + sep + "item"] if header else []) + lines)
    line = at + 1 + header
    with pytest.raises(ValueError, match=rf"ids.txt, line {line}: item id '{stray}' .field 1. "
                                         r"is not an integer.*string_ids=True"):
        data.read(path, format="pairs")
    read = data.read(path, format="pairs", string_ids=True)
    expected_items = sorted({str(i) for i in np.delete(items, at)} | {stray})
    assert read.item_ids.tolist() == expected_items
    assert read.user_ids.dtype.kind == "U" and read.matrix.nnz <= len(lines)


def test_string_ids_apply_to_lightgcn_and_not_to_matrices(tmp_path):
    path = write_lines(tmp_path / "train.txt", ["0 1 2", "1 2 a7", "2 0"])
    with pytest.raises(ValueError, match="item id 'a7' is not an integer.*string_ids=True"):
        data.read(path, format="lightgcn")
    assert data.read(path, format="lightgcn", string_ids=True).item_ids.tolist() == \
        ["0", "1", "2", "a7"]
    sp.save_npz(tmp_path / "m.npz", sp.csr_matrix(np.eye(3)))
    with pytest.raises(ValueError, match="string_ids=True does not apply to 'npz'"):
        data.read(tmp_path / "m.npz", string_ids=True)


def test_a_header_over_word_ids_is_flagged_and_header_true_reads_it(tmp_path):
    lines = ["user\titem", "alice\tbook", "bob\tpen", "alice\tpen"]
    path = write_lines(tmp_path / "words.tsv", lines)
    with pytest.warns(UserWarning, match=r"words.tsv, line 1 \('user\\titem'\) was read as an "
                                         r"interaction.*header=True"):
        read = data.read(path)
    assert "user" in read.user_ids.tolist()
    read = data.read(path, header=True)
    assert read.user_ids.tolist() == ["alice", "bob"] and read.matrix.nnz == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.read(path, header=False)  # said explicitly: no warning
        # a first line whose ids occur again is data, and says nothing
        data.read(write_lines(tmp_path / "data.tsv", lines[1:] + ["alice\tbook2"]))


def test_a_pairs_file_with_a_header_read_as_lightgcn_says_what_it_may_be(tmp_path):
    path = write_lines(tmp_path / "pairs.txt", ["user\titem", "1\t5", "2\t6"])
    with pytest.raises(ValueError, match="user id 'user' is not an integer.*format='pairs'"):
        data.read(path, format="lightgcn")
