"""What the benchmarks and the research probes share: where the datasets are, reading a
split, the validation split and fit every probe uses, and the environment a result
records. Scripts run from the repository root as modules (`python -m bench.run`,
`python -m research.sphere`), so that they import this as `bench.common`."""

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import rgals
from rgals.cli import positive_integer as positive  # noqa: F401 (argparse type)
from rgals.data import read, validation_split

HERE = Path(__file__).resolve().parent  # bench/
# the IR-Benchmark splits: beside the repository, or where RGALS_DATA says
DATA = Path(os.environ.get("RGALS_DATA", HERE.parent.parent / "shared" / "data"))
DATASETS = {"health": "amazon2014-health", "electronic": "amazon2014-electronic",
            "gowalla": "gowalla"}
FACTORS = 64


def load(dataset):
    """(train, test) users x items matrices of a shared dataset, test ids mapped as
    train's."""
    folder = DATA / DATASETS[dataset]
    if not (folder / "train.tsv").is_file() or not (folder / "test.tsv").is_file():
        raise FileNotFoundError(f"{folder} must hold train.tsv and test.tsv: the benchmarks "
                                "read the IR-Benchmark splits from ../shared/data beside the "
                                "repository, or from the folder RGALS_DATA names")
    train_set = read(folder / "train.tsv")
    test_set = read(folder / "test.tsv", users=train_set.user_ids, items=train_set.item_ids)
    return train_set.matrix, test_set.matrix


def environment():
    versions = {"python": platform.python_version(), "rgals": rgals.__version__,
                "numpy": np.__version__}
    try:
        import implicit
        versions["implicit"] = implicit.__version__
    except ImportError:
        pass
    return {"machine": platform.processor() or platform.machine(), "versions": versions}


def probe_options(parser, sweeps):
    """The options every validation probe (research/) shares: --sweeps, --factors,
    --threads, --seed."""
    parser.add_argument("--sweeps", type=positive, default=sweeps)
    parser.add_argument("--factors", type=positive, default=FACTORS)
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--seed", type=int, default=0)


def probe_data(dataset, seed):
    """(fit part, validation) of a dataset's training split: design.md 3's 10% per user."""
    train, _ = load(dataset)
    return validation_split(train, ratio=0.1, seed=seed)


def validation_fit(loss, fit_part, validation, sweeps, factors, threads, seed, patience):
    """A fit stopped after `patience` evaluations without a better validation NDCG@20
    (the best sweep's factors kept); returns (model, wall seconds)."""
    model = rgals.ALSSolver(factors=factors, loss=loss, iterations=sweeps, tol=0.0,
                            random_state=seed, early_stopping=True, patience=patience,
                            num_threads=threads)
    start = time.perf_counter()
    model.fit(fit_part, show_progress=False, validation=validation)
    return model, time.perf_counter() - start


def script(main):
    """Run a script's `main`: a missing dataset or file is one line on stderr (exit 2)
    rather than a traceback."""
    try:
        return main()
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
