"""The fuzz test of tests/test_fuzz.py run longer, with counts of what happened.

    python bench/fuzz.py --examples 5000

Draws random small interaction matrices (every sparse format and a dense array, float,
int and bool dtypes, values including NaN, inf, huge, tiny and negative) and random
estimator parameters, fits, and checks the outcome as the test does: a clear error
(ValueError, TypeError or FloatingPointError with a message) or a finite model with valid
recommendations. Prints how many examples ended each way, and each error message's
first words with its count. Anything else (a crash, a non-finite model) fails the run.
"""

import argparse
import collections
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import test_fuzz  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    args = parser.parse_args(argv)
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
    check = settings(max_examples=args.examples, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))(
        given(matrix=test_fuzz.interactions(), params=test_fuzz.parameters)(
            test_fuzz.test_fit_refuses_clearly_or_returns_a_finite_model.hypothesis.inner_test))
    check()
    print(f"{sum(outcomes.values())} fits:")
    for outcome, count in outcomes.most_common():
        print(f"  {outcome}: {count}")
    print("most common messages:")
    for message, count in messages.most_common(12):
        print(f"  {count:5d}  {message} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
