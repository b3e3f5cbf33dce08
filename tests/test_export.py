"""save/load: .npy files a user can read, atomic writes, no silent overwrite."""

import json
import os
import stat
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import rgals
from conftest import random_interactions
from rgals.backend import to_host


@pytest.fixture
def model(rng, backend_name):
    return rgals.ALSSolver(factors=3, loss="rgx", iterations=2, random_state=5,
                           backend=backend_name).fit(random_interactions(rng),
                                                     show_progress=False)


def test_round_trip(model, tmp_path):
    model.save(tmp_path / "model")
    np.testing.assert_array_equal(np.load(tmp_path / "model" / "user_factors.npy"),
                                  to_host(model.user_factors_))
    np.testing.assert_array_equal(np.load(tmp_path / "model" / "item_factors.npy"),
                                  to_host(model.item_factors_))
    metadata = json.loads((tmp_path / "model" / "params.json").read_text())
    assert metadata["params"]["loss"] == "rgx" and metadata["dtype"] == "float32"
    loaded = rgals.load(tmp_path / "model")
    # the private test backend is saved as "cpu"
    assert loaded.get_params() == {**model.get_params(), "dtype": "float32",
                                   "backend": "gpu" if model.backend == "gpu" else "cpu"}
    for a, b in zip(loaded.recommend([0, 1, 2], N=4), model.recommend([0, 1, 2], N=4)):
        np.testing.assert_array_equal(a, b)
    assert not [path for path in (tmp_path / "model").iterdir() if path.name.startswith(".")]
    # the fitted loss survives, with every hyperparameter resolved, and folds in alike
    assert loaded.loss_ == model.loss_ and loaded.loss_.bound
    assert metadata["loss"] == model.loss_.to_dict()
    resolved = rgals.losses.RGx().resolve(model.user_items_)  # what the data decided
    assert {key: metadata["loss"][key] for key in ("name", "alpha", "regularization",
                                                  "top_k")} == {
        "name": "rgx", "alpha": resolved.alpha, "regularization": resolved.regularization,
        "top_k": None}
    assert resolved.alpha > 0 and resolved.regularization > 0
    rows = model.user_items_[[1, 4]]
    np.testing.assert_array_equal(to_host(loaded.recalculate_user([1, 4], rows)),
                                  to_host(model.recalculate_user([1, 4], rows)))


def test_a_loss_object_round_trips(rng, tmp_path):
    user_items = random_interactions(rng)
    model = rgals.ALSSolver(factors=3, iterations=2, random_state=5,
                            loss=rgals.losses.IALS(alpha=3.0)).fit(user_items,
                                                                   show_progress=False)
    model.save(tmp_path)
    metadata = json.loads((tmp_path / "params.json").read_text())
    assert metadata["params"]["loss"] == {"name": "ials", "alpha": 3.0,
                                          "regularization": 0.01}
    loaded = rgals.ALSSolver.load(tmp_path)
    assert loaded.loss == rgals.losses.IALS(alpha=3.0) and loaded.loss_ == model.loss_
    np.testing.assert_array_equal(loaded.recalculate_item(2, user_items.T.tocsr()[2]),
                                  model.recalculate_item(2, user_items.T.tocsr()[2]))


def test_a_loss_given_as_a_dict_round_trips_with_its_options(rng, tmp_path):
    user_items = random_interactions(rng)
    spec = {"name": "rg2", "popularity_exponent": 0.7}
    model = rgals.ALSSolver(factors=3, iterations=2, random_state=5, alpha=0.2,
                            loss=spec).fit(user_items, show_progress=False)
    model.save(tmp_path)
    loaded = rgals.load(tmp_path)
    assert loaded.loss == spec and loaded.alpha == 0.2
    assert loaded.loss_ == model.loss_ == rgals.losses.RG2(
        alpha=0.2, popularity_exponent=0.7).resolve(model.user_items_)
    np.testing.assert_array_equal(loaded.loss_.item_scale, model.loss_.item_scale)
    item = user_items.T.tocsr()[2]
    np.testing.assert_array_equal(loaded.recalculate_item(2, item),
                                  model.recalculate_item(2, item))


def test_a_model_saved_in_format_1_loads(model, tmp_path):
    model.save(tmp_path)
    metadata = json.loads((tmp_path / "params.json").read_text())
    metadata["format_version"] = 1
    del metadata["loss"]
    metadata["params"]["alpha"] = 0.2
    (tmp_path / "params.json").write_text(json.dumps(metadata))
    loaded = rgals.load(tmp_path)
    assert loaded.loss_ == rgals.losses.RGx(alpha=0.2, regularization=1e-3)  # then default


def test_refuses_to_overwrite_unless_asked(model, tmp_path):
    model.save(tmp_path)
    before = np.load(tmp_path / "item_factors.npy")
    model.item_factors_ = model.item_factors_ + 1
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "item_factors.npy"), before)
    model.save(tmp_path, overwrite=True)
    np.testing.assert_array_equal(np.load(tmp_path / "item_factors.npy"),
                                  to_host(model.item_factors_))


def test_failed_write_leaves_previous_file_and_no_temporary(model, tmp_path, monkeypatch):
    model.save(tmp_path)
    before = (tmp_path / "user_factors.npy").read_bytes()

    def broken_save(file, array, allow_pickle):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        model.save(tmp_path, overwrite=True)
    assert (tmp_path / "user_factors.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(rgals.export.FILES)


def test_load_errors(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved rgals model"):
        rgals.load(tmp_path)
    model.save(tmp_path)
    np.save(tmp_path / "item_factors.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="has shape"):
        rgals.load(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        model.save(tmp_path / "file")


@pytest.fixture
def umask():
    """Run with a known umask and restore the caller's afterwards."""
    previous = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_open_would_give(model, tmp_path, umask, mask, mode):
    umask(mask)
    model.save(tmp_path / "model")
    model.monitor_.to_csv(tmp_path / "history.csv")
    written = [*(tmp_path / "model").iterdir(), tmp_path / "history.csv"]
    assert sorted(path.name for path in written) == sorted([*rgals.export.FILES, "history.csv"])
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name


def test_a_save_killed_among_its_renames_never_blocks_the_rerun(model, tmp_path, monkeypatch):
    real_replace = os.replace

    def crash_on_the_marker(source, target):
        if str(target).endswith("params.json"):
            raise KeyboardInterrupt  # as a kill between the renames would leave it
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_on_the_marker)
    with pytest.raises(KeyboardInterrupt):
        model.save(tmp_path)
    monkeypatch.setattr(os, "replace", real_replace)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert "params.json" not in names and "user_factors.npy" in names
    assert any(name.startswith(".params.json.") and name.endswith(".tmp") for name in names)
    with pytest.raises(FileNotFoundError, match="missing params.json"):
        rgals.load(tmp_path)
    with pytest.raises(FileExistsError, match="interrupted save.*no params.json.*1 temporary "
                                              "files.*overwrite=True"):
        model.save(tmp_path)
    model.save(tmp_path, overwrite=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(rgals.export.FILES)
    np.testing.assert_array_equal(to_host(rgals.load(tmp_path).item_factors_),
                                  to_host(model.item_factors_))


def test_stray_temporaries_alone_do_not_block_a_save(model, tmp_path):
    (tmp_path / ".user_factors.npy.0badc0de.tmp").write_bytes(b"partial")
    model.save(tmp_path)
    assert rgals.load(tmp_path).user_factors_.shape == model.user_factors_.shape


def damage(path, how):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    else:
        path.write_bytes(b"not a numpy file at all")


@pytest.mark.parametrize("name", ["user_factors.npy", "item_factors.npy", "user_items.npz"])
@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_a_damaged_file_is_an_error_that_names_it(model, tmp_path, name, how):
    model.save(tmp_path)
    damage(tmp_path / name, how)
    with pytest.raises(ValueError, match=f"{name} cannot be read.*truncated or damaged"):
        rgals.load(tmp_path)


@pytest.mark.parametrize("change, message", [
    (lambda factors: factors.astype(np.float16), "holds float16 factors"),
    (lambda factors: factors.astype(np.float64), "holds float64 factors; params.json says "
                                                 "float32"),
    (lambda factors: np.where(np.arange(factors.size).reshape(factors.shape) == 3, np.nan,
                              factors).astype(factors.dtype), "NaN or infinite"),
])
def test_loaded_factors_are_checked(model, tmp_path, change, message):
    model.save(tmp_path)
    factors = np.load(tmp_path / "item_factors.npy")
    np.save(tmp_path / "item_factors.npy", change(factors))
    with pytest.raises(ValueError, match=message):
        rgals.load(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda meta: meta["params"].update(colour="red"), "unknown parameter 'colour'"),
    (lambda meta: meta["params"].update(factors=0), "factors"),
    (lambda meta: meta["params"].update(loss="softmax"), "unknown loss 'softmax'"),
    (lambda meta: meta["loss"].update(name="softmax"), "unknown loss 'softmax'"),
    (lambda meta: meta.pop("params"), "no 'params'"),
])
def test_params_a_model_cannot_have_are_a_clear_error(model, tmp_path, edit, message):
    model.save(tmp_path)
    metadata = json.loads((tmp_path / "params.json").read_text())
    edit(metadata)
    (tmp_path / "params.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=f"params.json .*{message}"):
        rgals.load(tmp_path)


def test_id_maps_with_duplicates_or_damage_are_refused(tmp_path):
    from rgals import data
    interactions = data.Interactions(random_interactions(np.random.default_rng(0)).tocsr(),
                                     np.arange(23), np.arange(17))
    interactions.save_ids(tmp_path)
    np.save(tmp_path / "user_ids.npy", np.array([1, 2, 2]))
    with pytest.raises(ValueError, match="user_ids.npy holds duplicate ids"):
        data.load_ids(tmp_path)
    damage(tmp_path / "item_ids.npy", "truncated")
    np.save(tmp_path / "user_ids.npy", np.arange(3))
    with pytest.raises(ValueError, match="item_ids.npy cannot be read"):
        data.load_ids(tmp_path)


def test_a_failed_rename_leaves_no_temporary(model, tmp_path, monkeypatch):
    def refuse(source, target):
        raise OSError("read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="read-only"):
        model.monitor_.to_csv(tmp_path / "history.csv")
    assert list(tmp_path.iterdir()) == []


def same_answers(loaded, model, user_items, users=(0, 1, 5), **recommend):
    """recommend, recalculate_user and similar_items agree between two models."""
    users = list(users)
    rows = user_items[users]
    for a, b in zip(loaded.recommend(users, rows, N=5, **recommend),
                    model.recommend(users, rows, N=5, **recommend)):
        np.testing.assert_array_equal(to_host(a), to_host(b))
    np.testing.assert_array_equal(to_host(loaded.recalculate_user(users, rows)),
                                  to_host(model.recalculate_user(users, rows)))
    for a, b in zip(loaded.similar_items([0, 3], N=5), model.similar_items([0, 3], N=5)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loss", ["rg2", {"name": "rg2", "popularity_exponent": 0.5},
                                  "ials"])
def test_a_model_saved_without_its_interactions_answers_alike(rng, tmp_path, loss):
    user_items = random_interactions(rng)
    if loss == "ials":
        user_items.data[:] = 1.0  # unit confidences: the bound loss's fast path
    model = rgals.ALSSolver(factors=3, loss=loss, iterations=3, random_state=5).fit(
        user_items, show_progress=False)
    model.save(tmp_path, interactions=False)
    assert "user_items.npz" not in {path.name for path in tmp_path.iterdir()}
    loaded = rgals.load(tmp_path)
    assert loaded.user_items_ is None and loaded.loss_ == model.loss_
    assert vars(loaded.loss_).keys() == vars(model.loss_).keys()
    for name, value in vars(model.loss_).items():
        np.testing.assert_array_equal(getattr(loaded.loss_, name), value, err_msg=name)
    same_answers(loaded, model, user_items)
    # the user without interactions still gets the most popular items
    cold = int(np.flatnonzero(np.diff(user_items.indptr) == 0)[0])
    for a, b in zip(loaded.recommend(cold, user_items[cold], N=4),
                    model.recommend(cold, N=4)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="no training interactions.*pass user_items"):
        loaded.recommend([0, 1], N=3)
    with pytest.raises(ValueError, match="no training interactions.*pass train="):
        rgals.metrics.evaluate(loaded, user_items)
    with pytest.raises(ValueError, match="interactions=False"):
        loaded.save(tmp_path / "again")
    loaded.save(tmp_path / "again", interactions=False)
    same_answers(rgals.load(tmp_path / "again"), model, user_items)


def test_overwriting_replaces_the_training_matrix_or_its_totals(model, tmp_path):
    model.save(tmp_path)
    model.save(tmp_path, overwrite=True, interactions=False)
    names = {path.name for path in tmp_path.iterdir()}
    assert "user_items.npz" not in names and "interaction_totals.npz" in names
    assert rgals.load(tmp_path).user_items_ is None
    model.save(tmp_path, overwrite=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(rgals.export.FILES)
    assert rgals.load(tmp_path).user_items_.nnz == model.user_items_.nnz


@pytest.mark.parametrize("interactions", [True, False])
def test_one_npz_file_by_path_or_file_object(rng, tmp_path, interactions, umask):
    user_items = random_interactions(rng)
    model = rgals.ALSSolver(factors=3, loss="rgx", iterations=3, random_state=5).fit(
        user_items, show_progress=False)
    model.save(tmp_path / "model.npz", interactions=interactions)
    assert [path.name for path in tmp_path.iterdir()] == ["model.npz"]
    assert stat.S_IMODE((tmp_path / "model.npz").stat().st_mode) == 0o644
    for source in (tmp_path / "model.npz", str(tmp_path / "model")):  # implicit adds .npz
        loaded = rgals.ALSSolver.load(source)
        assert loaded.get_params() == {**model.get_params(), "dtype": "float32",
                                       "backend": "gpu" if model.backend == "gpu" else "cpu"}
        assert (loaded.user_items_ is not None) == interactions
        same_answers(loaded, model, user_items)
    with open(tmp_path / "other.npz", "wb+") as file:  # as implicit's test does it
        model.save(file, interactions=interactions)
        file.seek(0)
        same_answers(rgals.ALSSolver.load(file), model, user_items)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(tmp_path / "model.npz")
    model.save(tmp_path / "model.npz", overwrite=True)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_a_damaged_npz_is_an_error_that_names_it(model, tmp_path, how):
    model.save(tmp_path / "model.npz")
    damage(tmp_path / "model.npz", how)
    with pytest.raises(ValueError, match="model.npz cannot be read.*truncated or damaged"):
        rgals.load(tmp_path / "model.npz")


def test_npz_contents_are_checked(model, tmp_path):
    model.save(tmp_path / "model.npz")
    content = dict(np.load(tmp_path / "model.npz"))
    content["rgals_previous_item_factors"] = content["item_factors"][:3]
    np.savez(tmp_path / "bad.npz", **content)
    with pytest.raises(ValueError, match=r"bad.npz \(previous_item_factors\) has shape"):
        rgals.load(tmp_path / "bad.npz")
    content = dict(np.load(tmp_path / "model.npz"))
    content["rgals_user_items_indptr"] = content["rgals_user_items_indptr"][::-1].copy()
    np.savez(tmp_path / "bad.npz", **content)
    with pytest.raises(ValueError, match=r"bad.npz \(user_items\) is damaged"):
        rgals.load(tmp_path / "bad.npz")
    del content["item_factors"]
    np.savez(tmp_path / "bad.npz", **content)
    with pytest.raises(ValueError, match="holds no item_factors: not a fitted model"):
        rgals.load(tmp_path / "bad.npz")


def test_implicit_reads_an_rgals_ials_file_and_rgals_reads_implicits(rng, tmp_path):
    implicit_als = pytest.importorskip("implicit.cpu.als")
    user_items = random_interactions(rng, n_users=40, n_items=30, empty_user=False)
    model = rgals.ALSSolver(factors=4, loss="ials", alpha=2.0, regularization=0.1,
                            iterations=4, random_state=3).fit(user_items,
                                                              show_progress=False)
    model.save(tmp_path / "rgals.npz")
    peer = implicit_als.AlternatingLeastSquares.load(tmp_path / "rgals.npz")
    assert (peer.alpha, peer.regularization, peer.factors) == (2.0, 0.1, 4)
    users = np.arange(40)
    for a, b in zip(peer.recommend(users, user_items, N=5),
                    model.recommend(users, user_items, N=5)):
        np.testing.assert_allclose(a, b, rtol=1e-5)

    peer = implicit_als.AlternatingLeastSquares(factors=5, regularization=0.2, alpha=3.0,
                                                iterations=3, random_state=1)
    peer.fit(user_items, show_progress=False)
    peer.save(str(tmp_path / "implicit.npz"))
    loaded = rgals.load(tmp_path / "implicit.npz")
    assert (loaded.loss_, loaded.factors, loaded.user_items_) == (
        rgals.losses.IALS(alpha=3.0, regularization=0.2), 5, None)
    for a, b in zip(loaded.recommend(users, user_items, N=5),
                    peer.recommend(users, user_items, N=5)):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    for a, b in zip(loaded.similar_items([0, 7], N=5), peer.similar_items([0, 7], N=5)):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    # both fold in by the exact iALS user step: the same factors
    np.testing.assert_allclose(loaded.recalculate_user(users[:6], user_items[:6]),
                               peer.recalculate_user(users[:6], user_items[:6]), rtol=1e-4,
                               atol=1e-6)
    # it knows no totals of training data (no popularity fallback), and keeps none
    assert loaded.interaction_totals_.item_counts is None
    with pytest.raises(ValueError, match="interactions=False"):
        loaded.save(tmp_path / "again.npz")
    for again in (tmp_path / "again.npz", tmp_path / "directory"):
        loaded.save(again, interactions=False)
        reloaded = rgals.load(again)
        assert reloaded.interaction_totals_.item_counts is None
        assert reloaded.loss_ == loaded.loss_ and not reloaded.loss_.unit_confidences
        np.testing.assert_array_equal(reloaded.item_factors_, peer.item_factors)


# -- a model read while it is written, and what a damaged directory may hold -------------

def other_model(model):
    """A model of the same shape with other factors (a second save to tell apart)."""
    twin = model.to_cpu()
    twin.user_factors_ = twin.user_factors_ + 1
    twin.item_factors_ = twin.item_factors_ - 1
    return twin


def same_factors(loaded, model):
    return (np.array_equal(to_host(loaded.user_factors_), to_host(model.user_factors_))
            and np.array_equal(to_host(loaded.item_factors_), to_host(model.item_factors_)))


def during_renames(monkeypatch, after, action):
    """Run `action()` once inside the next save, after `after` renames into place."""
    real_replace, done = os.replace, []

    def replace(source, target):
        real_replace(source, target)
        if not str(Path(target).name).startswith(".") and len(done) < after:
            done.append(target)
            if len(done) == after:
                action()

    monkeypatch.setattr(os, "replace", replace)


def test_a_load_during_an_overwrite_gets_the_previous_model_whole(model, tmp_path,
                                                                  monkeypatch):
    model.save(tmp_path)
    twin = other_model(model)
    seen = []

    def load_now():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a save under way is no interrupted save
            seen.append(rgals.load(tmp_path))

    during_renames(monkeypatch, after=1, action=load_now)  # new user factors, old items
    twin.save(tmp_path, overwrite=True)
    assert len(seen) == 1 and same_factors(seen[0], model)
    assert same_factors(rgals.load(tmp_path), twin)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_an_interrupted_overwrite_leaves_the_previous_model_loadable(model, tmp_path,
                                                                     monkeypatch):
    model.save(tmp_path)
    twin = other_model(model)

    def interrupt():
        raise KeyboardInterrupt  # Ctrl-C between the renames

    during_renames(monkeypatch, after=2, action=interrupt)
    with pytest.raises(KeyboardInterrupt):
        twin.save(tmp_path, overwrite=True)
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="interrupted save.*loaded the model saved before"):
        assert same_factors(rgals.load(tmp_path), model)
    with pytest.raises(FileExistsError, match="interrupted save"):
        twin.save(tmp_path)
    twin.save(tmp_path, overwrite=True)
    assert same_factors(rgals.load(tmp_path), twin)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_a_second_save_into_a_directory_being_saved_fails_clearly(model, tmp_path,
                                                                  monkeypatch):
    twin, refused = other_model(model), []

    def second_save():
        for overwrite in (False, True):
            with pytest.raises(BlockingIOError, match="another save into .* is under way"):
                twin.save(tmp_path, overwrite=overwrite)
            refused.append(overwrite)

    during_renames(monkeypatch, after=1, action=second_save)
    model.save(tmp_path)  # into a new directory: overwrite=False holds for the second
    assert refused == [False, True] and same_factors(rgals.load(tmp_path), model)


def test_a_file_that_does_not_match_params_json_is_named(model, tmp_path):
    model.save(tmp_path / "a")
    other_model(model).save(tmp_path / "b")
    (tmp_path / "a" / "item_factors.npy").write_bytes(
        (tmp_path / "b" / "item_factors.npy").read_bytes())  # a valid file of another save
    with pytest.raises(ValueError, match="item_factors.npy does not match params.json"):
        rgals.load(tmp_path / "a")


SAVER = """
import sys, numpy as np, rgals
first, second = rgals.load(sys.argv[1]), rgals.load(sys.argv[2])
for k in range(int(sys.argv[4])):
    (first if k % 2 else second).save(sys.argv[3], overwrite=True)
"""


def test_loads_beside_a_process_that_keeps_saving_are_never_mixed(rng, tmp_path):
    user_items = random_interactions(rng, n_users=400, n_items=300)
    model = rgals.ALSSolver(factors=16, iterations=1, random_state=0).fit(
        user_items, show_progress=False)
    twin = other_model(model)
    model.save(tmp_path / "first.npz")
    twin.save(tmp_path / "second.npz")
    model.save(tmp_path / "served")
    saver = subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path / "first.npz"),
                              str(tmp_path / "second.npz"), str(tmp_path / "served"), "60"])
    loads = 0
    try:
        while saver.poll() is None:
            loaded = rgals.load(tmp_path / "served")
            assert same_factors(loaded, model) or same_factors(loaded, twin)
            loads += 1
    finally:
        saver.wait(timeout=120)
    assert saver.returncode == 0 and loads > 0


def rewrite(path, array, directory):
    """Replace a model file by hand, listing its new SHA-256 in params.json (as a save
    on another machine would have written it)."""
    if path.suffix == ".npy":
        np.save(path, array, allow_pickle=False)
    else:
        sp.save_npz(path, array, compressed=True)
    metadata = json.loads((directory / "params.json").read_text())
    with open(path, "rb") as file:
        metadata["files"][path.name] = rgals.files.file_digest(file)
    (directory / "params.json").write_text(json.dumps(metadata))


def test_big_endian_factor_files_load_in_native_order(model, tmp_path):
    model.save(tmp_path)
    factors = np.load(tmp_path / "user_factors.npy")
    rewrite(tmp_path / "user_factors.npy", factors.astype(factors.dtype.newbyteorder(">")),
            tmp_path)
    loaded = rgals.load(tmp_path)
    assert loaded.user_factors_.dtype.isnative and same_factors(loaded, model)
    rows = model.user_items_[[1, 4]]
    np.testing.assert_allclose(to_host(loaded.recalculate_user([1, 4], rows)),
                               to_host(model.recalculate_user([1, 4], rows)), rtol=1e-6)


@pytest.mark.parametrize("index, message", [(1000, "indices must be < 17"),
                                            (-1, "indices must be >= 0")])
def test_training_rows_with_ids_outside_the_model_are_refused(model, tmp_path, index,
                                                              message):
    model.save(tmp_path)
    matrix = sp.load_npz(tmp_path / "user_items.npz").tocsr()
    matrix.indices[3] = index
    rewrite(tmp_path / "user_items.npz", matrix, tmp_path)
    with pytest.raises(ValueError, match=f"user_items.npz is damaged.*{message}"):
        rgals.load(tmp_path)


@pytest.mark.parametrize("field, value", [("item_counts", -1), ("user_sums", np.nan),
                                          ("item_counts", "7")])
def test_damaged_totals_are_refused(model, tmp_path, field, value):
    model.save(tmp_path, interactions=False)
    totals = dict(np.load(tmp_path / "interaction_totals.npz"))
    totals[field] = totals[field].astype(object if isinstance(value, str) else float)
    totals[field][2] = value
    totals[field] = totals[field].astype(str) if isinstance(value, str) else totals[field]
    with open(tmp_path / "interaction_totals.npz", "wb") as file:
        np.savez(file, **totals)
    metadata = json.loads((tmp_path / "params.json").read_text())
    metadata.pop("files")  # as an older save wrote it: the content checks alone
    (tmp_path / "params.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=f"interaction_totals.npz is damaged \\({field}"):
        rgals.load(tmp_path)


def huge_header(path, shape, descr="<f4"):
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": descr, "fortran_order": False,
                                                    "shape": shape})


def test_a_header_claiming_a_huge_array_allocates_nothing(model, tmp_path):
    model.save(tmp_path)
    huge_header(tmp_path / "user_factors.npy", (2 ** 40, 3))
    with pytest.raises(ValueError, match=r"user_factors.npy has shape \(1099511627776, 3\); "
                                         r"the model's description says \(23, 3\)"):
        rgals.load(tmp_path)
    # inside an .npz: the member's header is refused before its array is allocated
    model.save(tmp_path / "model.npz")
    content = dict(np.load(tmp_path / "model.npz"))
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as archive:
        for key, value in content.items():
            with archive.open(f"{key}.npy", "w") as member:
                if key == "rgals_user_items_indices":
                    np.lib.format.write_array_header_1_0(member, {
                        "descr": "<i4", "fortran_order": False, "shape": (2 ** 40,)})
                else:
                    np.lib.format.write_array(member, value)
    with pytest.raises(ValueError, match=r"bad.npz \(rgals_user_items_indices\) has shape"):
        rgals.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("before, after, message", [
    ('"n_users": 23', '"n_users": Infinity', "Infinity is not a number"),
    ('"n_users": 23', '"n_users": 22.9', "n_users must be an integer"),
    ('"format_version": 3', '"format_version": "3"', "format_version must be an integer"),
    ('"format_version": 3', '"format_version": true', "format_version must be an integer"),
    ('"format_version": 3', '"format_version": 9', "saved in format 9.*upgrade rgals"),
    ('"value_range": [', '"value_range": 5, "was": [', "value_range must be"),
    ('"factors": 3,', '"factors": 99,', "params say factors=99 but the model has 3"),
    ('"dtype": "float32"', '"dtype": "float64"', "dtype"),
    ('"backend": "', '"backend": "_batched", "was": "', "backend must be one of cpu, gpu"),
])
def test_a_model_description_that_cannot_be_right_is_a_clear_error(model, tmp_path, before,
                                                                   after, message):
    model.save(tmp_path)
    text = (tmp_path / "params.json").read_text()
    text = json.dumps(json.loads(text), indent=2)  # one spelling of each key
    assert before in text
    (tmp_path / "params.json").write_text(text.replace(before, after, 1))
    with pytest.raises(ValueError, match=f"params.json .*{message}"):
        rgals.load(tmp_path)


def test_a_loss_in_params_other_than_the_fitted_one_is_refused(model, tmp_path):
    model.save(tmp_path)
    metadata = json.loads((tmp_path / "params.json").read_text())
    metadata["params"]["loss"] = "ials"
    (tmp_path / "params.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="params say loss='ials' but the model was fitted "
                                         "with 'rgx'"):
        rgals.load(tmp_path)


def test_a_text_file_given_as_a_model_says_what_it_is(tmp_path):
    (tmp_path / "train.tsv").write_text("user\titem\n1\t2\n")
    (tmp_path / "link").symlink_to(tmp_path / "train.tsv")
    for path in (tmp_path / "train.tsv", tmp_path / "link"):
        with pytest.raises(ValueError, match="not an .npz file \\(it begins like a text "
                                             "file\\)"):
            rgals.load(path)


def test_an_implicit_bpr_file_is_not_read_as_als(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "bpr.npz", user_factors=rng.random((5, 9), dtype=np.float32),
             item_factors=rng.random((4, 9), dtype=np.float32), factors=8,
             learning_rate=0.01, verify_negative_samples=True, dtype="float32")
    with pytest.raises(ValueError, match="not an implicit ALS model.*learning_rate"):
        rgals.load(tmp_path / "bpr.npz")


def test_loading_a_model_of_zero_factors_warns(model, tmp_path):
    model.save(tmp_path)
    for name in ("user_factors.npy", "item_factors.npy"):
        rewrite(tmp_path / name, np.zeros_like(np.load(tmp_path / name)), tmp_path)
    with pytest.warns(RuntimeWarning, match="every factor shrank to about zero"):
        rgals.load(tmp_path)
