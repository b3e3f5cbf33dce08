#!/usr/bin/env bash
# The GPU path checked here, without a GPU (issue 30): run before every device run
# (bench/gpu_check.sh). The CuPy stand-in (../shared/tools/cupy-standin, see its README)
# replaces cupy and cupyx by a strict fake built from the CuPy wheel's own names and
# signatures: it computes with NumPy and refuses what CuPy refuses (names and keywords
# CuPy lacks, implicit conversions to NumPy, NumPy arrays mixed into device operations),
# and counts device-to-host syncs per call site. It verifies API use only: never speed,
# memory, CUDA library loading or the device's rounding.
#
#   bash bench/gpu_standin.sh [path to cupy-standin]
#
# It needs the CuPy wheel installed for its names (pip install cupy-cuda12x; nothing runs
# on a GPU). Writes the stand-in's logs (names used, syncs, refusals) to $OUT.
set -euo pipefail
STANDIN=$(cd "${1:-../shared/tools/cupy-standin}" && pwd)
OUT=${OUT:-bench/out/standin}
mkdir -p "$OUT"
python -c "import cupy" 2>/dev/null || {
  echo "the stand-in needs the CuPy wheel for its names: pip install cupy-cuda12x" >&2
  exit 2
}
# 1. the GPU cases of the suite; not the Dask tests (dask imports cupyx names the
#    stand-in does not have)
PYTHONPATH=$STANDIN CUPY_STANDIN_LOG=$OUT/tests.json python -m pytest -q -p cupy_standin \
  -k "gpu or cupy" $(for file in tests/test_dask*.py; do echo "--ignore=$file"; done)
# 2. device-to-host syncs per sweep: none may grow with the data
PYTHONPATH=$STANDIN CUPY_STANDIN_LOG=$OUT/syncs.json python -m bench.gpu_syncs \
  | tee "$OUT/syncs.txt"
# 3. what the stand-in refused in this repository's code (pytest's own probes of the
#    fake modules left out): must be none
python - "$OUT/tests.json" <<'PY'
import json, sys
refused = [entry for entry in json.load(open(sys.argv[1]))["refused"]
           if entry[1].startswith(("rgals/", "kernels/", "bench/", "tests/"))]
print(f"refused in rgals, kernels, bench and tests: {len(refused)}")
for message, site, count in refused:
    print(f"  {site}: {message} ({count}x)")
sys.exit(1 if refused else 0)
PY
