"""The `rgals` command, end to end through `main(argv)`, on files written by the test."""

import argparse
import inspect
import json
import subprocess
import sys

import numpy as np
import pytest

import rgals
from rgals import ALSSolver, cli, data, load
from rgals.als import DTYPES
from rgals.backend import BACKENDS
from rgals.losses import LOSSES
from rgals.metrics import ranking_metrics
from rgals.solve import SOLVERS


def write_pairs(path, matrix, prefix_user="u", prefix_item="i"):
    """A TSV with a header and string ids (u7, i3), one line per stored pair."""
    coo = matrix.tocoo()
    lines = ["user\titem"] + [f"{prefix_user}{u}\t{prefix_item}{i}"
                              for u, i in zip(coo.row, coo.col)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def files(tmp_path, rng):
    matrix = data.synthetic(n_users=80, n_items=50, factors=4, mean_activity=10,
                            seed=int(rng.integers(1 << 30)))
    train, test = data.holdout_split(matrix, ratio=0.2, seed=1)
    return write_pairs(tmp_path / "train.tsv", train), write_pairs(tmp_path / "test.tsv", test)


def run(argv, capsys):
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def parse_metrics(out):
    return {line.split()[0]: float(line.split()[1]) for line in out.splitlines()
            if "@" in line.split(" ")[0]}


FIT = ["--factors", "8", "--iterations", "4", "--threads", "1", "--quiet"]


def test_fit_evaluate_recommend_round_trip(files, tmp_path, capsys):
    train_path, test_path = files
    out = tmp_path / "model"
    status, stdout, stderr = run(["fit", str(train_path), "--test", str(test_path), *FIT,
                                  "--out", str(out)], capsys)
    assert status == 0, stderr
    fitted = parse_metrics(stdout)
    assert set(fitted) == {f"{name}@{k}" for name in ("ndcg", "recall", "precision", "mrr", "map")
                           for k in (10, 20)}

    # the saved factors, joined back to the original ids, give the printed metrics
    model = load(out)
    user_ids, item_ids = data.load_ids(out)
    assert all(str(user).startswith("u") for user in user_ids)
    test = data.read(test_path, users=user_ids, items=item_ids)
    expected = ranking_metrics(model.user_factors_, model.item_factors_, test.matrix,
                               model.user_items_, K=(10, 20))
    for key, value in fitted.items():
        assert value == pytest.approx(expected[key], abs=1e-4)

    status, stdout, _ = run(["evaluate", str(out), str(test_path)], capsys)
    assert status == 0
    assert parse_metrics(stdout) == fitted

    status, stdout, _ = run(["recommend", str(out), str(user_ids[3]), str(user_ids[0]),
                             "-n", "5"], capsys)
    assert status == 0
    lines = [line.split("\t") for line in stdout.strip().splitlines()[1:]]
    assert [line[0] for line in lines] == [str(user_ids[3])] * 5 + [str(user_ids[0])] * 5
    ids, _ = model.recommend(3, N=5)
    assert [line[2] for line in lines[:5]] == [str(item_ids[i]) for i in ids]
    seen = set(item_ids[model.user_items_[3].indices].astype(str))
    assert not seen & {line[2] for line in lines[:5]}


def test_a_model_saved_without_interactions_needs_the_training_file(files, tmp_path,
                                                                     capsys):
    train_path, test_path = files
    full, light = tmp_path / "full", tmp_path / "light"
    for out, extra in ((full, []), (light, ["--without-interactions"])):
        status, _, stderr = run(["fit", str(train_path), *FIT, "--out", str(out), *extra],
                                capsys)
        assert status == 0, stderr
    assert not (light / "user_items.npz").exists()
    assert (light / "interaction_totals.npz").is_file()
    for command in (["evaluate", str(light), str(test_path)],
                    ["recommend", str(light), "u3"]):
        status, _, stderr = run(command, capsys)
        assert status == 1 and "saved without its training interactions" in stderr
        assert "--train" in stderr
    outputs = []
    for model in (full, light):
        train = [] if model == full else ["--train", str(train_path)]
        outputs.append([run(["evaluate", str(model), str(test_path), *train], capsys)[1],
                        run(["recommend", str(model), "u3", "u0", "-n", "4", *train],
                            capsys)[1]])
    assert outputs[0] == outputs[1] and "u3\t1\t" in outputs[0][1]
    status, stdout, _ = run(["recommend", str(light), "u3", "--keep-seen"], capsys)
    assert status == 0 and stdout.count("u3\t") == 10


def test_demo_beats_popularity_and_exports(tmp_path, capsys):
    out = tmp_path / "demo"
    status, stdout, stderr = run(["demo", "--quiet", "--out", str(out)], capsys)
    assert status == 0, stderr
    rows = {line.split("  ")[0].strip(): line.split()[-4:] for line in stdout.splitlines()
            if "(this run)" in line}
    ours, popularity = rows["rgals rg2 (this run)"], rows["popularity (this run)"]
    # columns: recall@10 recall@20 ndcg@10 ndcg@20
    assert float(ours[3]) > 1.2 * float(popularity[3])
    assert (out / "user_factors.npy").is_file() and (out / "item_ids.npy").is_file()
    assert np.load(out / "item_factors.npy").shape == (1200, 64)


def test_errors_are_one_line(tmp_path, files, capsys):
    status, stdout, stderr = run(["fit", str(tmp_path / "missing.tsv"), *FIT], capsys)
    assert status == 1
    assert stderr.startswith("rgals: error:") and "missing.tsv" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1

    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", "fit", str(tmp_path / "missing.tsv")])
    with pytest.raises(FileNotFoundError):
        cli.main(["fit", str(tmp_path / "missing.tsv"), "--debug"])


def test_refuses_to_overwrite_before_fitting(files, tmp_path, capsys):
    train_path, _ = files
    out = tmp_path / "model"
    assert run(["fit", str(train_path), *FIT, "--out", str(out)], capsys)[0] == 0
    before = (out / "user_factors.npy").read_bytes()
    status, _, stderr = run(["fit", str(train_path), *FIT, "--seed", "5", "--out", str(out)],
                            capsys)
    assert status == 1 and "--overwrite" in stderr
    assert (out / "user_factors.npy").read_bytes() == before
    assert run(["fit", str(train_path), *FIT, "--seed", "5", "--out", str(out),
                "--overwrite"], capsys)[0] == 0
    assert (out / "user_factors.npy").read_bytes() != before


def test_recommend_unknown_user(files, tmp_path, capsys):
    train_path, _ = files
    out = tmp_path / "model"
    run(["fit", str(train_path), *FIT, "--out", str(out)], capsys)
    status, _, stderr = run(["recommend", str(out), "nobody"], capsys)
    assert status == 1 and "nobody" in stderr and "not in the model" in stderr


def test_unknown_test_ids_fail_or_drop(files, tmp_path, capsys):
    train_path, test_path = files
    extra = test_path.read_text() + "stranger\ti0\n"
    test_path.write_text(extra)
    status, _, stderr = run(["fit", str(train_path), "--test", str(test_path), *FIT], capsys)
    assert status == 1 and "Pass --unknown drop to skip" in stderr and "1 user id (" in stderr
    assert "unknown='drop'" not in stderr
    status, stdout, stderr = run(["fit", str(train_path), "--test", str(test_path), *FIT,
                                  "--unknown", "drop"], capsys)
    assert status == 0 and "ndcg@20" in stdout
    # a warning is one line of the command line's own, without a source location
    warning = [line for line in stderr.splitlines() if "dropped 1 of" in line]
    assert len(warning) == 1 and warning[0].startswith("rgals: warning: ")
    assert ".py:" not in stderr


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "rgals", "--version"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("rgals ")


def test_evaluate_and_recommend_a_gpu_fitted_model_on_the_cpu(files, tmp_path, capsys):
    """A model saved with backend='gpu' is evaluated and served on the CPU."""
    train_path, test_path = files
    out = tmp_path / "model"
    status, stdout, _ = run(["fit", str(train_path), "--test", str(test_path), *FIT,
                             "--out", str(out)], capsys)
    assert status == 0
    description = json.loads((out / "params.json").read_text())
    description["params"]["backend"] = "gpu"
    (out / "params.json").write_text(json.dumps(description))
    status, evaluated, stderr = run(["evaluate", str(out), str(test_path)], capsys)
    assert status == 0, stderr
    assert parse_metrics(evaluated) == parse_metrics(stdout)
    user_ids, _ = data.load_ids(out)
    status, _, stderr = run(["recommend", str(out), str(user_ids[0]), "-n", "3"], capsys)
    assert status == 0, stderr


def test_choices_and_defaults_come_from_the_package():
    """A new loss, solver, backend or format appears on the command line by itself."""
    parser = cli._parser()
    commands = next(action.choices for action in parser._actions
                    if isinstance(action, argparse._SubParsersAction))
    options = {action.dest: action for action in commands["fit"]._actions}
    assert options["loss"].choices == list(LOSSES)
    assert options["solver"].choices == list(SOLVERS)
    assert options["backend"].choices == list(BACKENDS)
    assert options["dtype"].choices == [dtype.name for dtype in DTYPES]
    assert options["format"].choices == list(data.FORMATS)
    assert options["unknown"].choices == list(data.UNKNOWN)

    estimator = inspect.signature(ALSSolver).parameters
    reading = inspect.signature(data.read).parameters
    fit = parser.parse_args(["fit", "train.tsv"])
    # options not given stay out, so the estimator's own defaults (or a --params file) apply
    assert cli._model_params(fit) == {"random_state": 0}
    assert set(cli._model_options()) <= set(estimator)
    assert fit.early_stopping is estimator["early_stopping"].default
    help_text = " ".join(commands["fit"].format_help().split())
    for option, name in [("--factors", "factors"), ("--iterations", "iterations"),
                         ("--cg-steps", "cg_steps"), ("--solver", "solver"),
                         ("--monitor", "monitor"), ("--patience", "patience")]:
        assert f"default: {estimator[name].default}" in help_text.split(option, 2)[2], option
    assert "%(default)s" not in help_text and "SUPPRESS" not in help_text
    assert fit.format == reading["format"].default and fit.unknown == reading["unknown"].default
    assert (cli._column(fit.user_col), cli._column(fit.item_col)) == \
        (reading["user_col"].default, reading["item_col"].default)
    assert fit.k == list(inspect.signature(ranking_metrics).parameters["K"].default)
    assert parser.parse_args(["demo"]).num_threads == estimator["num_threads"].default
    assert parser.parse_args(["recommend", "model", "u1"]).top == \
        inspect.signature(ALSSolver.recommend).parameters["N"].default
    assert f"default: {estimator['factors'].default}" in commands["fit"].format_help()


def test_an_unwritable_out_fails_before_the_data_is_read(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    status, _, stderr = run(["fit", str(tmp_path / "missing.tsv"), *FIT,
                             "--out", str(blocker / "model")], capsys)
    assert status == 1 and "cannot write to" in stderr and "missing.tsv" not in stderr


def test_a_closed_stdout_stops_quietly_and_the_model_is_saved(files, tmp_path):
    train_path, test_path = files
    out = tmp_path / "model"
    process = subprocess.Popen(
        [sys.executable, "-m", "rgals", "fit", str(train_path), "--test", str(test_path),
         *FIT, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `rgals fit ... | head -0` would
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr and b"Broken pipe" not in stderr
    model = load(out)
    assert model.user_factors_.shape == (80, 8)
    assert data.load_ids(out)[0].shape == (80,)


def test_every_estimator_parameter_is_on_the_command_line():
    options = {action.dest for action in cli._parser()._subparsers._group_actions[0]
               .choices["fit"]._actions}
    for name in inspect.signature(ALSSolver).parameters:
        assert name in options, name
    help_text = " ".join(cli._parser()._subparsers._group_actions[0].choices["fit"]
                         .format_help().split())
    # the losses' real defaults: rg2's and rgx's come from the data
    assert "default: from the data (rg2, rgx), 1 (ials)" in help_text
    assert "default: from the data (rg2, rgx), 0.01 (ials)" in help_text


@pytest.mark.parametrize("option, message", [
    (["--factors", "0"], "factors must be an integer >= 1"),
    (["--validation-metric", "ndcg"], "validation_metric must look like"),
    (["--patience", "0"], "patience must be an integer >= 1"),
    (["--early-stopping", "--validation-ratio", "1.5"], "--validation-ratio must be between"),
])
def test_parameter_errors_come_before_the_data_is_read(tmp_path, option, message, capsys):
    status, _, stderr = run(["fit", str(tmp_path / "missing.tsv"), *option], capsys)
    assert status == 1 and message in stderr and "missing.tsv" not in stderr


def test_a_bad_cutoff_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", str(tmp_path / "missing.tsv"), "--k", "0"])
    assert "--k: expected an integer >= 1" in capsys.readouterr().err


def test_early_stopping_holds_out_validation_and_says_why_it_stopped(files, tmp_path,
                                                                     capsys):
    train_path, test_path = files
    status, stdout, stderr = run(["fit", str(train_path), "--test", str(test_path),
                                  "--factors", "8", "--iterations", "40", "--threads", "1",
                                  "--quiet", "--early-stopping", "--patience", "1",
                                  "--tol", "0", "--out", str(tmp_path / "model")], capsys)
    assert status == 0 and "ndcg@20" in stdout
    assert "early stopping on" in stderr and "held out" in stderr
    assert "stopped after" in stderr and "of 40 sweeps: early stopping" in stderr
    model = load(tmp_path / "model")
    full = data.read(train_path).matrix
    assert model.user_items_.nnz < full.nnz  # fitted on the part left after the split


def test_a_fit_stopped_by_tol_says_so(files, capsys):
    train_path, _ = files
    status, _, stderr = run(["fit", str(train_path), "--factors", "8", "--iterations", "500",
                             "--threads", "1", "--quiet", "--tol", "1e-2"], capsys)
    assert status == 0 and "of 500 sweeps: converged" in stderr


def test_a_fit_says_which_regularization_its_path_chose(tmp_path, capsys):
    matrix = data.synthetic(n_users=300, n_items=120, factors=4, mean_activity=10, seed=3)
    train_path = write_pairs(tmp_path / "train.tsv", matrix)
    options = ["fit", str(train_path), "--factors", "8", "--iterations", "12", "--threads",
               "1", "--quiet"]
    status, _, stderr = run(options, capsys)
    model = ALSSolver(factors=8, iterations=12, num_threads=1, random_state=0).fit(
        data.read(train_path).matrix, show_progress=False)
    assert status == 0 and (f"regularization {model.loss_.regularization:.3g}: chosen on a "
                            f"holdout path of {len(model.regularization_path_)} stages") in stderr
    status, _, stderr = run(options + ["--regularization", "0.01"], capsys)
    assert status == 0 and "holdout path" not in stderr


def test_the_printed_model_shows_only_what_differs_from_the_defaults(files, capsys):
    train_path, _ = files
    _, _, stderr = run(["fit", str(train_path), "--factors", "8", "--iterations", "2",
                        "--threads", "1", "--quiet"], capsys)
    printed = next(line for line in stderr.splitlines() if line.startswith("fitted"))
    assert "dtype" not in printed and "factors=8" in printed


def test_the_compilation_note_appears_only_when_kernels_were_compiled(monkeypatch):
    counts = iter([5, 5])
    monkeypatch.setattr(cli, "_compilations", lambda: next(counts))
    assert cli._compiled_note(cli._compilations()) == ""
    counts = iter([5, 8])
    monkeypatch.setattr(cli, "_compilations", lambda: next(counts))
    assert "3 kernels compiled on this first run" in cli._compiled_note(cli._compilations())



def test_string_ids_on_the_command_line(tmp_path, capsys):
    lines = [f"{u}\t{i}" for u in range(12) for i in range(u % 5, 9, 2)] + ["3\tx17"]
    path = tmp_path / "mixed.tsv"
    path.write_text("\n".join(lines) + "\n")
    status, _, stderr = run(["fit", str(path), *FIT], capsys)
    assert status == 1 and "'x17'" in stderr and "--string-ids" in stderr
    assert run(["fit", str(path), *FIT, "--string-ids"], capsys)[0] == 0


def test_header_option(tmp_path, capsys):
    path = tmp_path / "words.tsv"
    path.write_text("user\titem\n" + "".join(f"u{u % 7}x\ti{u % 5}y\n" for u in range(40)))
    status, _, stderr = run(["fit", str(path), *FIT, "--header", "no"], capsys)
    assert status == 0 and "8 users" in stderr  # the header line read as a user
    status, _, stderr = run(["fit", str(path), *FIT, "--header", "yes"], capsys)
    assert status == 0 and "7 users" in stderr


TUNE = ["--trials", "4", "--factors", "4", "--max-sweeps", "5", "--threads", "1", "--quiet",
        "--search", "random"]


def test_tune_then_fit_with_its_params_gives_the_tuned_model(files, tmp_path, capsys):
    train_path, _ = files
    out = tmp_path / "search"
    status, stdout, stderr = run(["tune", str(train_path), *TUNE, "--out", str(out),
                                  "--export-model", "--seed", "5"], capsys)
    assert status == 0, stderr
    assert stdout.count("| complete |") + stdout.count("| pruned |") + \
        stdout.count("| failed") == 4
    saved = json.loads((out / "best_params.json").read_text())
    assert len(saved["trials"]) == 4 and saved["search"] == "random"
    assert (out / "search.png").stat().st_size > 0
    status, _, stderr = run(["fit", str(train_path), "--params", str(out / "best_params.json"),
                             "--out", str(tmp_path / "refit"), "--quiet"], capsys)
    assert status == 0, stderr
    exported, refitted = load(out / "model"), load(tmp_path / "refit")
    np.testing.assert_array_equal(exported.item_factors_, refitted.item_factors_)
    # the same search from Python, refitted there
    train = data.read(train_path)
    result = rgals.tune(train.matrix, n_trials=4, factors=4, max_sweeps=5, num_threads=1,
                        search="random", random_state=5, show_progress=False,
                        dtype=np.float32, backend="cpu")
    assert result.best_params == saved["params"]
    np.testing.assert_array_equal(result.model.item_factors_, exported.item_factors_)
    # a second run into the same directory needs --overwrite
    status, _, stderr = run(["tune", str(train_path), *TUNE, "--out", str(out)], capsys)
    assert status == 1 and "already holds best_params.json" in stderr


def test_fit_options_override_the_params_file(files, tmp_path, capsys):
    train_path, _ = files
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"factors": 3, "alpha": 0.2, "iterations": 2}))
    status, _, stderr = run(["fit", str(train_path), "--params", str(params), "--factors", "5",
                             "--out", str(tmp_path / "model"), "--quiet"], capsys)
    assert status == 0, stderr
    model = load(tmp_path / "model")
    assert model.item_factors_.shape[1] == 5 and model.loss_.alpha == 0.2
    assert "iterations=2" in stderr


def test_a_params_file_may_ask_for_early_stopping(files, tmp_path, capsys):
    train_path, _ = files
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"factors": 3, "iterations": 30, "early_stopping": True,
                                  "patience": 1}))
    status, _, stderr = run(["fit", str(train_path), "--params", str(params), "--quiet"],
                            capsys)
    assert status == 0 and "early stopping on" in stderr, stderr


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read parameters from"),
    ('{"early_stopping": "yes"}', "early_stopping must be True or False"),
    ("[1, 2]", "must hold a JSON object of ALSSolver parameters"),
    ('{"colour": 1}', "unknown ALSSolver parameter 'colour'"),
    ('{"params": {"factors": 0}}', "factors must be an integer >= 1"),
])
def test_a_bad_params_file_is_one_clear_line(files, tmp_path, capsys, content, message):
    train_path, _ = files
    params = tmp_path / "params.json"
    params.write_text(content)
    status, _, stderr = run(["fit", str(train_path), "--params", str(params)], capsys)
    assert status == 1 and message in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("space, message", [
    (["alpha=1:0.1"], "low < high"),
    (["alpha=0.1:x"], "write NAME, NAME=LOW:HIGH"),
    (["alpha=0.1:1:ln"], "write NAME, NAME=LOW:HIGH"),
    (["colour"], "unknown hyperparameter 'colour'"),
])
def test_tune_space_errors_come_before_the_data_is_read(tmp_path, capsys, space, message):
    status, _, stderr = run(["tune", str(tmp_path / "missing.tsv"), *TUNE, "--out",
                             str(tmp_path / "o"), "--space", *space], capsys)
    assert status == 1 and message in stderr and "missing.tsv" not in stderr
    assert not (tmp_path / "o").exists()


def test_tune_space_parsing():
    assert cli._parse_space(None) is None
    assert cli._parse_space(["alpha=1e-3:1:log", "regularization", "cg_steps=2,3",
                             "top_k_quantile=exact,sampled", "reg_exponent=0:1"]) == {
        "alpha": (1e-3, 1, "log"), "regularization": None, "cg_steps": [2, 3],
        "top_k_quantile": ["exact", "sampled"], "reg_exponent": (0, 1)}


def test_tune_searches_factors_when_not_given(files, tmp_path, capsys):
    train_path, _ = files
    at = TUNE.index("--factors")
    options = TUNE[:at] + TUNE[at + 2:]
    status, stdout, stderr = run(["tune", str(train_path), *options, "--out",
                                  str(tmp_path / "o"), "--space", "factors=2:6"], capsys)
    assert status == 0, stderr
    saved = json.loads((tmp_path / "o" / "best_params.json").read_text())
    assert all(2 <= trial["params"].get("factors", 2) <= 6 for trial in saved["trials"][1:])
    assert "best validation" in stdout


def test_tune_says_what_the_winning_defaults_resolved_to(files, tmp_path, capsys,
                                                         monkeypatch):
    from rgals import tuning
    real = tuning._run_trial

    def defaults_win(number, *args):  # every other trial fails
        run_ = real(number, *args)
        if number:
            run_.record.state, run_.record.error = "failed", "made to fail"
        return run_

    monkeypatch.setattr(tuning, "_run_trial", defaults_win)
    train_path, _ = files
    status, stdout, stderr = run(["tune", str(train_path), *TUNE, "--out",
                                  str(tmp_path / "o")], capsys)
    assert status == 0, stderr
    assert "trial 0 (the defaults) won" in stdout and '"regularization":' in stdout
    assert "choose again" in stdout


def test_an_interrupted_tune_keeps_the_completed_trials(files, tmp_path, capsys,
                                                        monkeypatch):
    from conftest import interrupt_tune_at
    interrupt_tune_at(monkeypatch, 2)
    train_path, _ = files
    status, stdout, stderr = run(["tune", str(train_path), *TUNE, "--out",
                                  str(tmp_path / "o"), "--export-model"], capsys)
    assert status == 0, stderr
    assert "interrupted" in stderr and "| 1 |" in stdout
    assert json.loads((tmp_path / "o" / "best_params.json").read_text())["stopped"] == \
        "interrupted"
    assert not (tmp_path / "o" / "model").exists()  # no refit, and no empty directory


def test_fit_out_is_not_created_before_the_save_and_cannot_be_empty(files, tmp_path,
                                                                    capsys):
    train_path, _ = files
    status, _, stderr = run(["fit", str(train_path), *FIT, "--out", ""], capsys)
    assert status == 1 and "--out needs a directory name" in stderr
    assert cli._check_output(tmp_path / "a" / "b", False) == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()


def test_a_params_file_cannot_choose_the_private_backend(files, tmp_path, capsys):
    train_path, _ = files
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"backend": "_batched"}))
    status, _, stderr = run(["fit", str(train_path), "--params", str(params)], capsys)
    assert status == 1 and "backend must be one of cpu, gpu" in stderr


def test_recommend_prints_the_known_users_and_reports_the_others(files, tmp_path, capsys):
    train_path, _ = files
    out = tmp_path / "model"
    assert run(["fit", str(train_path), *FIT, "--out", str(out)], capsys)[0] == 0
    user = data.read(train_path).user_ids[1]
    status, stdout, stderr = run(["recommend", str(out), str(user), "nobody", "-n", "3"],
                                 capsys)
    assert status == 1
    assert [line.split("\t")[0] for line in stdout.splitlines()[1:]] == [str(user)] * 3
    assert "1 user id not in the model: nobody" in stderr
    status, stdout, stderr = run(["recommend", str(out), "nobody", "ghost"], capsys)
    assert status == 1 and "2 user ids not in the model" in stderr and not stdout


def test_wide_metric_names_keep_their_columns_apart(files, capsys):
    train_path, test_path = files
    status, stdout, _ = run(["fit", str(train_path), "--test", str(test_path), *FIT,
                             "--k", "1000"], capsys)
    assert status == 0
    for line in stdout.splitlines():
        if line.startswith("precision@1000"):
            assert len(line.split()) == 2  # the name, then the value


def test_an_existing_output_is_refused_in_command_line_terms(files, tmp_path, capsys):
    train_path, _ = files
    out = tmp_path / "model"
    assert run(["fit", str(train_path), *FIT, "--out", str(out)], capsys)[0] == 0
    status, _, stderr = run(["fit", str(train_path), *FIT, "--out", str(out)], capsys)
    assert status == 1 and "pass --overwrite to replace them" in stderr
    assert "overwrite=True" not in stderr


def test_recommend_all_streams_every_users_list(files, tmp_path, capsys):
    train_path, _ = files
    out = tmp_path / "model"
    assert run(["fit", str(train_path), *FIT, "--out", str(out)], capsys)[0] == 0
    model, (user_ids, item_ids) = load(out), data.load_ids(out)
    status, stdout, stderr = run(["recommend", str(out), "--all", "-n", "2"], capsys)
    assert status == 0, stderr
    lines = [line.split("\t") for line in stdout.splitlines()]
    assert lines[0] == ["user", "rank", "item", "score"] and len(lines) == 1 + 2 * len(user_ids)
    ids, _ = model.recommend(np.arange(len(user_ids)), N=2)
    assert [line[0] for line in lines[1:]] == [str(user) for user in np.repeat(user_ids, 2)]
    assert [line[2] for line in lines[1:]] == [str(item_ids[item]) for item in ids.ravel()]
    # the same as the users named one by one
    named = run(["recommend", str(out), *map(str, user_ids[:3]), "-n", "2"], capsys)[1]
    assert stdout.startswith(named)
    for argv in ([str(user_ids[0]), "--all"], []):
        status, _, stderr = run(["recommend", str(out), *argv], capsys)
        assert status == 1 and "or give --all (not both)" in stderr
