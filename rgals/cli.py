"""The `rgals` command: fit, tune, evaluate, recommend and demo.

Errors print as one line (`rgals: error: ...`) and exit with status 1; `--debug` shows
the traceback instead.
"""

import argparse
import inspect
import json
import os
import re
import sys
import time
import warnings

import numpy as np

from . import __version__, data, export, files
from .als import ALSSolver
from .backend import BACKENDS
from .datasets import CITATION, PUBLISHED, load_default
from .losses import LOSSES
from .metrics import check_cutoffs, ranking_metrics
from .serving import HEADER, recommendation_lines
from .tuning import SEARCHES

# tuned on a 10% validation split of the embedded training set (seed 0; grid over loss,
# alpha, regularization; validation NDCG@20 0.093); see README
DEMO_PARAMS = dict(factors=64, loss="rg2", alpha=0.3, regularization=0.01, iterations=15,
                   random_state=0)

_DEFAULT = "default: %(default)s"  # help of an option that only has a default
_HEADER = {"auto": None, "yes": True, "no": False}  # --header: data.read's header=
_LONG_READ = 8 << 20  # bytes of input from which reading takes about a second
_OPTION_TYPES = {"integer": int, "real": float}  # a declared kind's argparse type


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warn_in_one_line
            status = args.run(args) or 0
        sys.stdout.flush()  # here, so that a closed stdout is seen inside the handler
        return status
    except BrokenPipeError:
        # the reader of standard output went away (`rgals ... | head`): whatever was to be
        # saved is saved already; stop quietly, and keep the interpreter's final flush of
        # stdout from failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("rgals: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line for users; --debug for developers
        if getattr(args, "debug", False):  # absent unless given (see _parser)
            raise
        print(f"rgals: error: {_command_line_terms(str(error))}", file=sys.stderr)
        return 1


def _parser():
    # --debug works before or after the command; SUPPRESS keeps a subcommand's default
    # from overwriting a --debug given before it (the parsers share this action object,
    # so no set_defaults on it either)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback on errors")

    parser = argparse.ArgumentParser(
        prog="rgals", parents=[common],
        description="ALS matrix factorization for ranking (RG2, RGx, iALS).")
    parser.add_argument("--version", action="version", version=f"rgals {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    fit = commands.add_parser("fit", parents=[common], help="fit on an interaction file",
                              description="Fit embeddings; print test metrics when --test is "
                                          "given; export them with --out.")
    fit.add_argument("data", help="training interactions (pairs CSV/TSV, LightGCN txt, "
                                  "MovieLens ratings, .mtx or .npz)")
    fit.add_argument("--test", help="test interactions in the same format")
    _add_reading_options(fit)
    groups = {"model": fit.add_argument_group("model"),
              "validation and early stopping":
                  fit.add_argument_group("validation and early stopping")}
    stopping = groups["validation and early stopping"]
    # --early-stopping is the command line's own: a split of the training file
    stopping.add_argument("--early-stopping", action="store_true",
                          help="hold out --validation-ratio of each user's training items, "
                               "fit on the rest and keep the sweep with the best "
                               "--validation-metric")
    stopping.add_argument("--validation-ratio", type=float, default=0.1, help=_DEFAULT)
    for name, declared in ALSSolver.parameters.items():
        if declared.cli is not None:
            _add_parameter(groups[declared.cli_group], name)
    stopping.add_argument("--params", metavar="FILE",
                          help="ALSSolver parameters from a JSON file (best_params.json of "
                               "`rgals tune`, or a plain object of them); options given here "
                               "override the file's")
    _given_only(fit, _model_options())
    _add_metric_options(fit)
    fit.add_argument("--out", help="directory for user_factors.npy, item_factors.npy, the id "
                                   "maps and params.json")
    fit.add_argument("--overwrite", action="store_true", help="replace files in --out")
    fit.add_argument("--without-interactions", action="store_true",
                     help="save only the totals of the training interactions, not the "
                          "matrix (user_items.npz); evaluate and recommend then need --train")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.set_defaults(run=_fit)

    evaluate = commands.add_parser("evaluate", parents=[common],
                                   help="metrics of a saved model on a test file",
                                   description="Ranking metrics of a model saved by "
                                               "`rgals fit --out` on a test file.")
    evaluate.add_argument("model", help="directory written by `rgals fit --out`")
    evaluate.add_argument("test", help="test interactions, with the training file's ids")
    _add_train_option(evaluate, "to mask")
    _add_reading_options(evaluate)
    _add_metric_options(evaluate)
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(run=_evaluate)

    recommend = commands.add_parser("recommend", parents=[common],
                                    help="top-N items for users of a saved model",
                                    description="Print `user, rank, item, score` (tab-"
                                                "separated) for the given original user ids.")
    recommend.add_argument("model", help="directory written by `rgals fit --out`")
    recommend.add_argument("users", nargs="*", help="user ids as in the training file")
    recommend.add_argument("--all", action="store_true",
                           help="every user of the model, streamed block by block (redirect "
                                "the output to a file)")
    recommend.add_argument("-n", "--top", type=int, default=_default("N", ALSSolver.recommend),
                           help="items per user (default: %(default)s)")
    recommend.add_argument("--keep-seen", action="store_true",
                           help="do not filter the user's training items")
    _add_train_option(recommend, "to filter")
    _add_reading_options(recommend)
    recommend.set_defaults(run=_recommend)

    tune = commands.add_parser(
        "tune", parents=[common], help="search the hyperparameters on validation data",
        description="Search ALSSolver settings on a validation split of DATA (or on "
                    "--validation); print the trials, write best_params.json and a plot of "
                    "the search to --out. `rgals fit DATA --params OUT/best_params.json` "
                    "fits the best setting.")
    tune.add_argument("data", help="training interactions (the formats of `rgals fit`)")
    tune.add_argument("--validation", help="held-out interactions to score, with the training "
                                           "file's ids (default: 10%% of each user's "
                                           "interactions held out of DATA)")
    _add_reading_options(tune)
    search = tune.add_argument_group("search")
    search.add_argument("--trials", type=positive_integer, default=20, help=_DEFAULT)
    search.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    search.add_argument("--space", nargs="+", metavar="NAME[=RANGE]",
                        help="what to search: names with their declared domains, or "
                             "NAME=LOW:HIGH, NAME=LOW:HIGH:log, NAME=A,B,C (default: the "
                             "loss's alpha and regularization)")
    search.add_argument("--metric", default="ndcg@20", help=_DEFAULT)
    search.add_argument("--max-sweeps", type=positive_integer, default=30, help=_DEFAULT)
    search.add_argument("--patience", type=positive_integer, default=5,
                        help="sweeps without a better metric before a trial stops "
                             "(default: %(default)s)")
    search.add_argument("--search", choices=list(SEARCHES), default="auto",
                        help="auto: Optuna's TPE when installed, else random (default: "
                             "%(default)s)")
    search.add_argument("--seed", type=int, default=0, help=_DEFAULT)
    fixed = tune.add_argument_group("fixed model parameters")
    for name in ("loss", "dtype", "backend", "num_threads"):
        _add_parameter(fixed, name)
    declared = ALSSolver.parameters["factors"]
    _add_parameter(fixed, "factors", default=None,
                   help=f"{declared.doc} (default: {declared.default}; leave it out to "
                        "search it with --space)")
    tune.add_argument("--out", default="rgals-tune",
                      help="directory for best_params.json, search.png and, with "
                           "--export-model, the refitted model (default: %(default)s)")
    tune.add_argument("--export-model", action="store_true",
                      help="fit the best setting on all of DATA and save it to OUT/model")
    tune.add_argument("--overwrite", action="store_true", help="replace files in --out")
    tune.add_argument("--quiet", action="store_true", help="no progress bar")
    tune.set_defaults(run=_tune)

    demo = commands.add_parser("demo", parents=[common],
                               help="fit and evaluate on the embedded dataset",
                               description="Fit RG2 on the embedded Amazon 2014 Health split "
                                           "and print its test metrics next to a popularity "
                                           "baseline and published numbers.")
    _add_parameter(demo, "num_threads")
    demo.add_argument("--out", help="also export the embeddings to this directory")
    demo.add_argument("--overwrite", action="store_true", help="replace files in --out")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)
    return parser


def _add_parameter(group, name, **changes):
    """The option of ALSSolver parameter `name`, as declared (`changes`: argparse's
    keywords that differ here)."""
    declared = ALSSolver.parameters[name]
    default = declared.option_default
    if declared.default is None and any(name in loss.hyperparameters
                                        for loss in LOSSES.values()):
        shown = _loss_defaults(name)  # None: each loss's own default
    else:
        shown = "default: %(default)s"
    options = dict(default=default, help=f"{declared.doc} ({shown})")
    if declared.choices:
        options["choices"] = list(declared.choices)
    else:
        options["metavar"] = declared.cli.lstrip("-").replace("-", "_").upper()
        options["type"] = _OPTION_TYPES.get(declared.kind, str)
    group.add_argument(declared.cli, dest=name, **{**options, **changes})


def _model_options():
    return [name for name, declared in ALSSolver.parameters.items() if declared.cli]


def _given_only(parser, dests):
    """Leave the options `dests` out of the parsed namespace unless given (so that a
    --params file fills in the rest); their help still shows the estimator's default."""
    for action in parser._actions:
        if action.dest in dests:
            if action.help and "%(default)s" in action.help:
                action.help = action.help.replace("%(default)s", str(action.default))
            action.default = argparse.SUPPRESS


def _model_params(args):
    """ALSSolver keyword arguments: the --params file's, then the options given."""
    # the command line's own defaults (--seed 0), then the file's, then the options given
    chosen = {name: declared.cli_default for name, declared in ALSSolver.parameters.items()
              if declared.cli and declared.cli_default is not None}
    if getattr(args, "params", None):
        chosen.update(_read_params(args.params))
    chosen.update({name: getattr(args, name) for name in _model_options()
                   if hasattr(args, name)})
    return chosen


def _read_params(path):
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read parameters from {path}: {error}") from error
    params = content.get("params", content) if isinstance(content, dict) else None
    if not isinstance(params, dict):
        raise ValueError(f"{path} must hold a JSON object of ALSSolver parameters (or "
                         "`rgals tune`'s best_params.json)")
    valid = ALSSolver().get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"{path}: unknown ALSSolver parameter {unknown[0]!r}; valid: "
                         f"{', '.join(valid)}")
    if params.get("backend", "cpu") not in BACKENDS:  # not the private test backend
        raise ValueError(f"{path}: backend must be one of {', '.join(BACKENDS)}; got "
                         f"{params['backend']!r}")
    return params


def _add_reading_options(parser):
    group = parser.add_argument_group("reading files")
    group.add_argument("--format", default=_default("format", data.read),
                       choices=list(data.FORMATS), help=_DEFAULT)
    group.add_argument("--sep", help="field separator of pairs files (default: detected)")
    group.add_argument("--header", choices=list(_HEADER), default="auto",
                       help="whether the first line of a pairs file holds column names "
                            "(default: %(default)s, detected)")
    group.add_argument("--user-col", default=str(_default("user_col", data.read)),
                       help="column name or position of user ids (default: %(default)s)")
    group.add_argument("--item-col", default=str(_default("item_col", data.read)),
                       help="column name or position of item ids (default: %(default)s)")
    group.add_argument("--value-col", help="column of confidence values (default: all 1)")
    group.add_argument("--min-value", type=float,
                       help="drop interactions whose value is below this (e.g. 4 for ratings)")
    group.add_argument("--binary", action="store_true", help="set kept values to 1")
    group.add_argument("--string-ids", action="store_true",
                       help="read every id as text (for id columns that mix numbers and "
                            "names; without it such a column is an error)")
    group.add_argument("--unknown", default=_default("unknown", data.read),
                       choices=list(data.UNKNOWN),
                       help="test ids never seen in training: fail, or drop them with a warning "
                            "(default: %(default)s)")


def _add_train_option(parser, purpose):
    parser.add_argument("--train", help=f"the training interactions {purpose} (default: the "
                                        "ones saved with the model; needed for a model "
                                        "saved --without-interactions)")


def _add_metric_options(parser):
    parser.add_argument("--k", type=positive_integer, nargs="+", metavar="K",
                        default=list(_default("K", ranking_metrics)),
                        help="cut-offs of the metrics (default: %(default)s)")


def positive_integer(text):
    """argparse type: an integer >= 1 (checked before any file is read)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _loss_defaults(name):
    """'default: 0.01 (rg2, rgx), 1 (ials)': each loss's own default of a hyperparameter."""
    by_value = {}
    for loss_name, loss in LOSSES.items():
        if name in loss.hyperparameters:
            by_value.setdefault(loss.hyperparameters[name].default, []).append(loss_name)
    return "default: " + ", ".join(
        f"{'from the data' if value is None else format(value, 'g')} ({', '.join(names)})"
        for value, names in by_value.items())


def _default(name, function):
    """The default of parameter `name` of `function`."""
    return inspect.signature(function).parameters[name].default


def _column(text):
    """A column given on the command line: a position when it is a number, else a name."""
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def _read(path, args, users=None, items=None):
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    if size >= _LONG_READ and not getattr(args, "quiet", False):
        _say(f"reading {path} ({size / 2 ** 20:.0f} MB)")  # a sign of life before a long read
    return data.read(path, format=args.format, sep=args.sep, header=_HEADER[args.header],
                     user_col=_column(args.user_col),
                     item_col=_column(args.item_col), value_col=_column(args.value_col),
                     min_value=args.min_value, binary=args.binary, users=users, items=items,
                     unknown=args.unknown, string_ids=args.string_ids)


def _fit(args):
    # every parameter is checked before the data is read or the output touched
    chosen = _model_params(args)
    if args.early_stopping:  # else a --params file's value (checked below), or the default
        chosen["early_stopping"] = True
    model = ALSSolver(**chosen)
    params = model.checked_params()
    check_cutoffs(args.k)
    if not 0 < args.validation_ratio < 1:
        raise ValueError(f"--validation-ratio must be between 0 and 1; got "
                         f"{args.validation_ratio}")
    out = _check_output(args.out, args.overwrite)
    train = _read(args.data, args)
    test = (_read(args.test, args, users=train.user_ids, items=train.item_ids)
            if args.test else None)
    _say(f"{args.data}: {train.matrix.shape[0]} users x {train.matrix.shape[1]} items, "
         f"{train.matrix.nnz} interactions")
    fit_part, validation = train.matrix, None
    if model.early_stopping:
        seed = model.random_state if isinstance(model.random_state, int) else 0
        fit_part, validation = data.validation_split(train.matrix, ratio=args.validation_ratio,
                                                     seed=seed)
        _say(f"early stopping on {validation.nnz} validation interactions held out of "
             f"training ({args.validation_ratio:g} of each user's); the model is fitted on "
             "the rest")
    compiled = _compilations()
    start = time.perf_counter()
    model.fit(fit_part, show_progress=not args.quiet, validation=validation)
    _say(f"fitted {model!r} in {time.perf_counter() - start:.1f} s"
         + _compiled_note(compiled))
    if model.regularization_path_:
        _say(f"regularization {model.loss_.regularization:.3g}: chosen on a holdout path "
             f"of {len(model.regularization_path_)} stages "
             f"({model.regularization_path_[-1].sweeps} sweeps)")
    sweeps = int(model.monitor_.rows[-1]["sweep"]) if model.monitor_.rows else 0
    if sweeps < params["iterations"] and model.monitor_.stop_reason:
        _say(f"stopped after {sweeps} of {params['iterations']} sweeps: "
             f"{model.monitor_.stop_reason}")
    if out is not None:  # before any printing: a closed stdout must not lose the model
        _save(model, train, out, args.overwrite, not args.without_interactions)
    if test is not None:
        _print_metrics({f"rgals {params['loss'].name}": ranking_metrics(
            model.user_factors_, model.item_factors_, test.matrix, train.matrix, K=args.k,
            show_progress=not args.quiet)})


def _tune(args):
    from .tuning import search_space, tune

    # the space and the fixed parameters are checked before the data is read
    fixed = dict(loss=args.loss, dtype=args.dtype, backend=args.backend,
                 num_threads=args.num_threads)
    if args.factors is not None:  # else the default, unless --space searches it
        fixed["factors"] = args.factors
    ALSSolver(**fixed).checked_params()
    space = _parse_space(args.space)
    search_space(args.loss, space)
    out = files.prepare_directory(args.out, TUNE_FILES, args.overwrite)
    model_dir = out / "model"
    if args.export_model:
        _check_output(model_dir, args.overwrite)
    files.check_writable(out)
    train = _read(args.data, args)
    validation = (_read(args.validation, args, users=train.user_ids, items=train.item_ids)
                  .matrix if args.validation else None)
    _say(f"{args.data}: {train.matrix.shape[0]} users x {train.matrix.shape[1]} items, "
         f"{train.matrix.nnz} interactions")
    result = tune(train.matrix, n_trials=args.trials, timeout=args.timeout, metric=args.metric,
                  space=space, validation=validation, random_state=args.seed,
                  refit=args.export_model, max_sweeps=args.max_sweeps, patience=args.patience,
                  search=args.search, show_progress=not args.quiet, **fixed)
    files.write_json(out / "best_params.json", result.to_dict())
    saved = [str(out / "best_params.json")]
    try:
        result.plot(out / "search.png")
        saved.append(str(out / "search.png"))
    except ImportError:
        _say("no plot: it needs matplotlib (pip install 'rgals[plot]')")
    if result.model is not None:
        _save(result.model, train, model_dir, args.overwrite, True)
    ended = {"timeout": f", ended by --timeout {args.timeout} s",
             "interrupted": ", interrupted: the trials completed so far"}.get(
        result.stopped, "")
    _say(f"{len(result.trials)} trials in {result.seconds:.1f} s ({result.search} search"
         f"{ended}); saved {', '.join(saved)}")
    print(result.table())
    best = result.best_trial()
    print(f"best validation {result.metric}: {result.best_value:.4f} (trial {best.number}) "
          f"with {json.dumps(result.best_params)}")
    if best.defaults:
        print("trial 0 (the defaults) won: on the training data without the validation "
              f"interactions they resolved to {json.dumps(best.params)}; `rgals fit "
              "--params best_params.json` keeps the defaults, which choose again on the "
              "data it fits")


TUNE_FILES = ("best_params.json", "search.png")


def _parse_space(items):
    """--space NAME, NAME=LOW:HIGH[:log] or NAME=A,B,C as tune's `space` (None: default)."""
    if not items:
        return None
    space = {}
    for item in items:
        name, _, text = item.partition("=")
        if not text:
            space[name] = None
            continue
        try:
            if ":" in text:
                parts = text.split(":")
                if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
                    raise ValueError
                space[name] = tuple(_number(part, text=False) for part in parts[:2]) + \
                    tuple(parts[2:])
            else:
                space[name] = [_number(part) for part in text.split(",")]
        except ValueError:
            raise ValueError(f"--space {item!r}: write NAME, NAME=LOW:HIGH, NAME=LOW:HIGH:log "
                             "or NAME=A,B,C") from None
    return space


def _number(part, text=True):
    """An int, a float, or (for choices, when `text`) the text itself."""
    for kind in (int, float):
        try:
            return kind(part)
        except ValueError:
            pass
    if not text or not part:
        raise ValueError(part)
    return part


def _evaluate(args):
    model, user_ids, item_ids = _load(args.model)
    train = _training_rows(model, args, user_ids, item_ids, "--train FILE to mask them")
    test = _read(args.test, args, users=user_ids, items=item_ids)
    _print_metrics({args.model: ranking_metrics(model.user_factors_, model.item_factors_,
                                                test.matrix, train, K=args.k,
                                                show_progress=not args.quiet)})


def _training_rows(model, args, user_ids, item_ids, remedy):
    """The training matrix: read from --train with the model's ids, or the model's own."""
    if args.train is not None:
        return _read(args.train, args, users=user_ids, items=item_ids).matrix
    if model.user_items_ is None:
        raise ValueError(f"{args.model} was saved without its training interactions: pass "
                         f"{remedy}")
    return model.user_items_


def _recommend(args):
    if bool(args.users) == args.all:
        raise ValueError("name the users to recommend for, or give --all (not both)")
    if args.top < 1:
        raise ValueError(f"--top must be at least 1; got {args.top}")
    model, user_ids, item_ids = _load(args.model)
    if args.all:
        return _recommend_all(model, args, user_ids, item_ids)
    rows = {str(user): row for row, user in enumerate(user_ids)}
    known = [user for user in args.users if user in rows]
    unknown = [user for user in args.users if user not in rows]
    if not known:
        raise ValueError(f"{_unknown_users(unknown, user_ids)}: nothing to recommend")
    users = np.array([rows[user] for user in known])
    seen = None if args.keep_seen else _training_rows(
        model, args, user_ids, item_ids, "--train FILE to filter them, or --keep-seen")[users]
    ids, scores = model.recommend(users, seen, N=args.top,
                                  filter_already_liked_items=not args.keep_seen)
    sys.stdout.write(HEADER + recommendation_lines(np.array(known), ids, scores, item_ids))
    if unknown:  # the known users' lists are printed; the command still fails
        _say(f"rgals: error: {_unknown_users(unknown, user_ids)}")
        return 1
    return 0


def _recommend_all(model, args, user_ids, item_ids):
    """Every user's list, written to standard output as each block is ranked."""
    train = None if args.keep_seen else _training_rows(
        model, args, user_ids, item_ids, "--train FILE to filter them, or --keep-seen")
    sys.stdout.write(HEADER)
    for users, ids, scores in model.recommend_all(
            args.top, user_items=None if train is model.user_items_ else train,
            filter_already_liked_items=not args.keep_seen, show_progress=False):
        sys.stdout.write(recommendation_lines(user_ids[users], ids, scores, item_ids))
    return 0


def _unknown_users(unknown, user_ids):
    count = len(unknown)
    return (f"{count} user id{'' if count == 1 else 's'} not in the model: "
            f"{', '.join(unknown[:5])}{', ...' if count > 5 else ''} (the model knows "
            f"{len(user_ids)} users, for example {', '.join(map(str, user_ids[:3]))})")


def _demo(args):
    out = _check_output(args.out, args.overwrite)
    train, test = load_default()
    _say(f"embedded dataset: {CITATION}")
    _say(f"{train.shape[0]} users x {train.shape[1]} items; {train.nnz} training and "
         f"{test.nnz} test interactions")
    model = ALSSolver(num_threads=args.num_threads, **DEMO_PARAMS)
    compiled = _compilations()
    start = time.perf_counter()
    model.fit(train, show_progress=not args.quiet)
    _say(f"fitted {model!r} in {time.perf_counter() - start:.1f} s"
         + _compiled_note(compiled))
    popularity = np.asarray(train.sum(axis=0)).reshape(-1, 1)
    metrics = dict(K=(10, 20), metrics=("recall", "ndcg"))
    rows = {"rgals rg2 (this run)": ranking_metrics(model.user_factors_, model.item_factors_,
                                                     test, train, **metrics),
            "popularity (this run)": ranking_metrics(np.ones((train.shape[0], 1)), popularity,
                                                     test, train, **metrics)}
    rows.update({f"{name} (published, Adam, GPU)": values for name, values in PUBLISHED.items()})
    if out is not None:  # before any printing: a closed stdout must not lose the model
        ids = np.arange(train.shape[0]), np.arange(train.shape[1])
        _save(model, data.Interactions(model.user_items_, *ids), out, args.overwrite, True)
    _print_metrics(rows)


def _check_output(out, overwrite):
    """Before any work: refuse an output directory that holds model files (unless
    overwriting) or that cannot be written."""
    if out is None:
        return None
    if not str(out).strip():
        raise ValueError("--out needs a directory name (an empty one would write the model "
                         "into the current directory)")
    files.check_directory(out, export.ALL_FILES + data.ID_FILES, overwrite,
                          marker=export.MARKER)
    return files.check_writable(out)


def _save(model, interactions, out, overwrite, with_matrix):
    # the id maps first: the model's params.json, written last, marks a complete export
    interactions.save_ids(out, overwrite=overwrite)
    model.save(out, overwrite=overwrite, interactions=with_matrix)
    _say(f"saved {out}/user_factors.npy, {out}/item_factors.npy and the id maps "
         f"({', '.join(data.ID_FILES)}: row i of the factors belongs to id [i])")


def _load(directory):
    from . import load

    # evaluate/recommend run on the CPU, also for a model fitted with --backend gpu
    model = load(directory, backend="cpu")
    user_ids, item_ids = data.load_ids(directory)
    shape = model.interaction_totals_.shape
    if (len(user_ids), len(item_ids)) != shape:
        raise ValueError(f"{directory}: the id maps ({len(user_ids)} users, {len(item_ids)} "
                         f"items) do not match the model {shape}")
    return model, user_ids, item_ids


def _print_metrics(rows):
    """A table with a row per model and a column per metric (a list for one model)."""
    first = next(iter(rows.values()))
    columns = [key for key in first if key != "users"]
    if len(rows) == 1:
        cell = max(14, max(len(column) for column in columns) + 2)
        for column in columns:
            print(f"{column:<{cell}}{first[column]:.4f}")
    else:
        width = max(len(name) for name in rows)
        cell = max(11, max(len(column) for column in columns) + 2)
        print(f"{'':{width}}" + "".join(f"{column:>{cell}}" for column in columns))
        for name, values in rows.items():
            print(f"{name:{width}}" + "".join(
                f"{values[column]:{cell}.4f}" if column in values else f"{'-':>{cell}}"
                for column in columns))
    print(f"({first['users']} users with test items; full ranking, training items masked)")


def _compilations():
    """How many CPU kernels Numba has compiled in this process (not loaded from cache)."""
    from .kernels import cpu

    return sum(sum(kernel.stats.cache_misses.values()) for kernel in vars(cpu).values()
               if hasattr(kernel, "stats"))


def _compiled_note(before):
    """Said only when the fit compiled kernels: a first run, later ones load them."""
    compiled = _compilations() - before
    return (f", {compiled} kernels compiled on this first run included (later runs load "
            "them from the cache)" if compiled else "")


def _say(message):
    print(message, file=sys.stderr)


def _warn_in_one_line(message, category, filename, lineno, file=None, line=None):
    """A warning as the command line's other messages: one line, no source location."""
    _say(f"rgals: warning: {_command_line_terms(str(message))}")


def _command_line_terms(message):
    """A message for both audiences ("pass overwrite=True (--overwrite on the command
    line)") in the command line's terms alone ("pass --overwrite")."""
    return re.sub(r"\S+=\S+ \((--[^()]*?) on the command line\)", r"\1", message)


if __name__ == "__main__":
    sys.exit(main())
