"""The device run's script (bench/gpu_check.sh) and the stand-in check beside it
(bench/gpu_standin.sh): what issue 30 found wrong in the first stays fixed, and both
parse. Neither can run here: one needs a GPU, the other the CuPy stand-in."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent
SCRIPTS = ("gpu_check.sh", "gpu_standin.sh")


def commands(name):
    """The script's command lines (comments and continuations joined)."""
    text = (BENCH / name).read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_scripts_parse(name):
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    subprocess.run(["bash", "-n", str(BENCH / name)], check=True)


def test_the_device_run_calls_python3_and_an_installed_rgals():
    lines = commands("gpu_check.sh")
    # that machine's plain `python`, `pip` and `pytest` are not the Python with CuPy
    assert not [line for line in lines if re.match(r"(timeout \d+ )?(python|pip|pytest)\b",
                                                   line)]
    tests = [line for line in lines if "pytest" in line]
    # -P: the source tree's rgals/ (without rgals.kernels) stays off sys.path
    assert len(tests) == 1 and "python3 -P -m pytest" in tests[0]
    assert '-k "gpu or cupy"' in tests[0]  # the kernels' [cupy] cases too
    assert "-rfE" in tests[0] and "--timeout" in tests[0]
    assert not re.search(r"\| *tail", tests[0])  # the whole log comes back


def test_the_device_run_skips_implicit_where_it_is_missing():
    sweep = [line for line in commands("gpu_check.sh") if "bench.sweep_time" in line]
    assert len(sweep) == 1 and "$IMPLICIT" in sweep[0]
    assert 'IMPLICIT=--no-implicit' in commands("gpu_check.sh")


def test_the_device_run_leaves_time_for_a_rerun():
    # 15 minutes of device time pay the machine's start, one run and a rerun
    limits = [int(limit) for line in commands("gpu_check.sh")
              for limit in re.findall(r"^timeout (\d+) ", line)]
    assert len(limits) == 3 and sum(limits) <= 360
