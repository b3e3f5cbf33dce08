"""The examples run as their docstrings say, beside a clone (no ../shared), and write
only where they are told to."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_fit_and_export_then_serve_on_the_embedded_split(tmp_path):
    result = run(ROOT / "examples" / "fit_and_export.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    ndcg = float(next(line.split()[1] for line in result.stdout.splitlines()
                      if line.startswith("ndcg@20")))
    assert 0.13 < ndcg < 0.16  # Health's test split at the demo's setting
    assert (tmp_path / "example-model" / "user_ids.npy").is_file()
    served = run(ROOT / "examples" / "serve_top_n.py", "example-model", 0, 17, "nobody",
                 cwd=tmp_path)
    assert served.returncode == 0, served.stderr[-2000:]
    lines = served.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["0", "17", "nobody"]
    assert lines[2] == "nobody: not in the model" and lines[0].count("(") == 10


def test_fit_and_export_says_what_a_folder_lacks(tmp_path):
    result = run(ROOT / "examples" / "fit_and_export.py", tmp_path / "nowhere", cwd=tmp_path)
    assert result.returncode == 1
    assert "holds no train.tsv or test.tsv" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
