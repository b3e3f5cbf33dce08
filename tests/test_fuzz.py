"""Random small inputs, bad ones included: `fit` either refuses them with a clear error or
returns a finite model whose recommendations are valid ids; a saved model with one file
damaged or edited either loads into a model that serves valid ids or is a clear error
naming it.

Longer runs, with how many examples ended each way and the errors' first words:

    RGALS_FUZZ_SCALE=40 pytest tests/test_fuzz.py -k "fit or damaged" \
        --hypothesis-show-statistics
"""

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, event, given, settings, strategies as st

import rgals
from rgals import ALSSolver
from rgals.losses import LOSSES
from rgals.solve import SOLVERS

# ordinary values more often than the bad ones, so that most draws reach the solvers
VALUES = [1.0] * 6 + [3.5, 0.25, 2.0] * 2 + [0.0, -1.0, 1e-300, 1e20, 1e300, np.nan, np.inf,
                                            -np.inf]
FORMATS = ["csr", "csc", "coo", "lil", "dense"]
ERRORS = (ValueError, TypeError, FloatingPointError)
# examples per test = the count below times this (a longer run: RGALS_FUZZ_SCALE=40)
SCALE = int(os.environ.get("RGALS_FUZZ_SCALE", "1"))


def first_words(error, count=6, source=None):
    """An event naming how an example ended: the error's type and first words."""
    text = str(error) if source is None else str(error).replace(str(source), "MODEL")
    return f"refused: {type(error).__name__}: {' '.join(text.split()[:count])} ..."


@st.composite
def interactions(draw):
    rows = draw(st.integers(1, 7))
    columns = draw(st.integers(1, 7))
    stored = draw(st.lists(st.tuples(st.integers(0, rows - 1), st.integers(0, columns - 1),
                                     st.sampled_from(VALUES)), min_size=1, max_size=25))
    dense = np.zeros((rows, columns))
    for row, column, value in stored:
        dense[row, column] = value
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.bool_]))
    with np.errstate(invalid="ignore", over="ignore"):
        if dtype in (np.int64, np.bool_):
            dense = np.nan_to_num(dense, nan=0.0, posinf=5.0, neginf=-5.0).clip(-1e6, 1e6)
        dense = dense.astype(dtype)
    layout = draw(st.sampled_from(FORMATS))
    return dense if layout == "dense" else sp.csr_matrix(dense).asformat(layout)


parameters = st.fixed_dictionaries({
    "loss": st.sampled_from(list(LOSSES)),
    "factors": st.integers(1, 5),
    "alpha": st.sampled_from([None, 0.0, 0.1, 10.0, 1e10]),
    "regularization": st.sampled_from([None, 1e-6, 1.0, 1e4]),
    "solver": st.sampled_from(list(SOLVERS)),
    "cg_steps": st.integers(1, 3),
    "dtype": st.sampled_from([np.float32, np.float64]),
    "iterations": st.integers(1, 3),
    "random_state": st.integers(0, 3),
})


@settings(max_examples=120 * SCALE, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(matrix=interactions(), params=parameters)
def test_fit_refuses_clearly_or_returns_a_finite_model(matrix, params):
    model = ALSSolver(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collapse and conversion warnings are allowed
        try:
            model.fit(matrix, show_progress=False)
        except ERRORS as error:
            assert str(error).strip(), f"{type(error).__name__} without a message"
            event(first_words(error))
            return
    event("fitted")
    assert np.isfinite(model.user_factors_).all() and np.isfinite(model.item_factors_).all()
    objective = model.monitor_.history["objective"]
    assert np.isfinite(objective[-1])
    n_items = model.item_factors_.shape[0]
    ids, scores = model.recommend(np.arange(model.user_factors_.shape[0]), N=3)
    assert ids.shape == scores.shape and ids.shape[1] == min(3, n_items)
    assert ((ids >= -1) & (ids < n_items)).all()
    assert not np.isnan(scores).any()


@pytest.mark.filterwarnings("ignore:user_items is a dense")
@pytest.mark.parametrize("matrix", [sp.csr_matrix((3, 4)), np.zeros((2, 0))])
def test_matrices_without_interactions_are_refused(matrix):
    with pytest.raises(ValueError):
        ALSSolver(factors=2).fit(matrix, show_progress=False)


# -- the load path: a saved model with one file damaged or edited ------------------------

MODEL_FILES = ["user_factors.npy", "item_factors.npy", "previous_item_factors.npy",
               "user_items.npz", "params.json"]
LOAD_ERRORS = (ValueError, FileNotFoundError)
JSON_VALUES = [None, True, -1, 0, 3, 2.5, 1e308, "x", "float64", "ials", [], [1, 2], {}]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small fitted model saved as a directory and as one .npz (built once)."""
    rng = np.random.default_rng(7)
    matrix = sp.random(12, 9, density=0.4, random_state=rng, format="csr") * 3
    model = ALSSolver(factors=3, iterations=2, random_state=0).fit(matrix, show_progress=False)
    root = tmp_path_factory.mktemp("saved")
    model.save(root / "model")
    model.save(root / "model.npz")
    return root


def _mutate(path, how, where, byte, key, value):
    """Damage or edit one file: cut it, change one byte, replace it, delete it, or set a
    key of params.json (a nested one by `key`, a path of names) to `value`."""
    content = path.read_bytes()
    at = int(where * max(len(content) - 1, 0))
    if how == "truncate":
        path.write_bytes(content[:at])
    elif how == "flip":
        path.write_bytes(content[:at] + bytes([content[at] ^ (byte or 1)]) + content[at + 1:])
    elif how == "garbage":
        path.write_bytes(bytes([byte]) * (at + 1))
    elif how == "delete":
        path.unlink()
    elif how == "json" and path.name == "params.json":
        metadata = json.loads(content)
        node = metadata
        for name in key[:-1]:
            node = node.setdefault(name, {}) if isinstance(node.get(name), dict) else node
        node[key[-1]] = value
        path.write_text(json.dumps(metadata))


@settings(max_examples=80 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(MODEL_FILES + ["model.npz"]),
       how=st.sampled_from(["truncate", "flip", "garbage", "delete", "json"]),
       where=st.floats(0, 1), byte=st.integers(0, 255),
       key=st.sampled_from([("n_users",), ("factors",), ("dtype",), ("format_version",),
                            ("training_data",), ("value_range",), ("files",),
                            ("params", "factors"), ("params", "loss"), ("params", "dtype"),
                            ("params", "backend"), ("params", "iterations"),
                            ("loss", "alpha"), ("loss", "name")]),
       value=st.sampled_from(JSON_VALUES))
def test_a_damaged_model_is_a_clear_error_naming_it_or_serves(saved, target, how, where,
                                                              byte, key, value):
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        shutil.copytree(saved / "model", scratch / "model")
        shutil.copy(saved / "model.npz", scratch / "model.npz")
        source = scratch / ("model.npz" if target == "model.npz" else "model")
        _mutate(source / target if source.is_dir() else source, how, where, byte, key,
                value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a collapsed model or an interrupted save
            try:
                model = rgals.load(source)
            except LOAD_ERRORS as error:
                message = str(error)
                assert str(source) in message or target in message, message
                event(first_words(error, 7, source))
                return
        event("loaded and served")
        n_users, n_items = model.user_factors_.shape[0], model.item_factors_.shape[0]
        ids, scores = model.recommend(np.arange(n_users), N=3,
                                      filter_already_liked_items=False)
        assert ((ids >= 0) & (ids < n_items)).all() and np.isfinite(scores).all()
        similar, _ = model.similar_items(np.arange(n_items), N=2)
        assert ((similar >= -1) & (similar < n_items)).all()
