"""The fuzz tests of tests/test_fuzz.py run longer, with counts of what happened.

    python bench/fuzz.py --examples 5000 --load-examples 2000

Draws random small interaction matrices (every sparse format and a dense array, float,
int and bool dtypes, values including NaN, inf, huge, tiny and negative) and random
estimator parameters, fits, and checks the outcome as the test does: a clear error
(ValueError, TypeError or FloatingPointError with a message) or a finite model with valid
recommendations. Then saves a small model and damages or edits one of its files per
example (cut, a changed byte, replaced, deleted, a params.json key set to another JSON
value), and checks that `rgals.load` either gives a model that serves valid ids or fails
with a clear error naming the file. Prints how many examples ended each way, and each
error message's first words with its count. Anything else (a crash, a non-finite model,
another exception) fails the run.
"""

import argparse
import collections
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import test_fuzz  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--load-examples", type=int, default=1000)
    args = parser.parse_args(argv)
    fit_fuzz(args.examples)
    load_fuzz(args.load_examples)
    return 0


def report(what, outcomes, messages):
    print(f"{sum(outcomes.values())} {what}:")
    for outcome, count in outcomes.most_common():
        print(f"  {outcome}: {count}")
    print("most common messages:")
    for message, count in messages.most_common(12):
        print(f"  {count:5d}  {message} ...")


def fit_fuzz(examples):
    outcomes = collections.Counter()
    messages = collections.Counter()
    original = test_fuzz.ALSSolver.fit

    def counted(self, *positional, **keywords):
        try:
            result = original(self, *positional, **keywords)
        except test_fuzz.ERRORS as error:
            outcomes[f"refused: {type(error).__name__}"] += 1
            messages[" ".join(str(error).split()[:6])] += 1
            raise
        outcomes["fitted"] += 1
        return result

    test_fuzz.ALSSolver.fit = counted
    check = settings(max_examples=examples, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))(
        given(matrix=test_fuzz.interactions(), params=test_fuzz.parameters)(
            test_fuzz.test_fit_refuses_clearly_or_returns_a_finite_model.hypothesis.inner_test))
    check()
    report("fits", outcomes, messages)


def load_fuzz(examples):
    outcomes = collections.Counter()
    messages = collections.Counter()
    original = test_fuzz.rgals.load

    def counted(source, *positional, **keywords):
        try:
            result = original(source, *positional, **keywords)
        except test_fuzz.LOAD_ERRORS as error:
            outcomes[f"refused: {type(error).__name__}"] += 1
            text = str(error).replace(str(source), "MODEL")
            messages[" ".join(text.split()[:7])] += 1
            raise
        outcomes["loaded and served"] += 1
        return result

    test_fuzz.rgals.load = counted
    with tempfile.TemporaryDirectory() as root:
        saved = test_fuzz.saved.__wrapped__(
            type("Factory", (), {"mktemp": lambda self, name: Path(root) / name})())
        inner = test_fuzz.test_a_damaged_model_is_a_clear_error_naming_it_or_serves
        check = settings(max_examples=examples, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))(
            given(**inner.hypothesis._given_kwargs)(inner.hypothesis.inner_test))
        check(saved)
    test_fuzz.rgals.load = original
    report("loads of a damaged or edited model", outcomes, messages)


if __name__ == "__main__":
    sys.exit(main())
