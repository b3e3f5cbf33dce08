#!/usr/bin/env bash
# Issues 18 and 30: everything the GPU backend needs measured, in one call on the device
# machine. First check the GPU path here under the CuPy stand-in (bench/gpu_standin.sh).
#
# Here, first (the datasets beside the repository do not travel):
#   mkdir -p gpu-data && cp -r ../shared/data/gowalla gpu-data/ && echo /gpu-data/ >> .git/info/exclude
# Then one device call, with carry=["gpu-data"] and timeout_s 420. The steps' own limits
# add up to 330 s, so that the machine's start and a rerun fit in 15 minutes of device
# time:
#   bash bench/gpu_check.sh
# That machine has no network, but it has CuPy (CUDA 13), Numba, SciPy, pytest,
# pytest-timeout and hypothesis; implicit is not there. rgals is installed without its
# dependencies or a build environment, so the `gpu` extra's CuPy is never fetched. The
# tests run as `python3 -P -m pytest`: -P keeps the source tree's rgals/, which lacks
# rgals.kernels, off sys.path, so they import the installed package. What it prints and
# measures goes to $OUT (at most 8 files come back): versions.txt, tests_gpu.txt (the
# whole pytest log), sweep_time.txt, gpu_check.txt and gpu_check.json.
set -uo pipefail
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install --no-deps --no-build-isolation -q . 2>&1 | tail -3
DATA=gpu-data/gowalla
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import cupy, numba, scipy, numpy; print('cupy', cupy.__version__, 'numba', numba.__version__, 'scipy', scipy.__version__, 'numpy', numpy.__version__)"
  python3 -c "import implicit.gpu; print('implicit gpu', implicit.gpu.HAS_CUDA)" 2>&1 | tail -1
} > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"
# 1. the GPU cases of the suite: the backend fixture's "gpu" and the kernels' "cupy"
#    cases (the Dask tests need dask, which that machine lacks); 60 s at most per test
timeout 120 python3 -P -m pytest -q -rfE -p no:cacheprovider --timeout 60 \
  -k "gpu or cupy" tests > "$OUT/tests_gpu.txt" 2>&1
tail -15 "$OUT/tests_gpu.txt"
# 2. seconds per sweep: GPU against the CPU backend on 2 threads in the same run (implicit's
#    GPU ALS only where it is installed: not on that machine)
IMPLICIT=--no-implicit
python3 -c "import implicit" 2>/dev/null && IMPLICIT=
timeout 100 python3 -m bench.sweep_time --data "$DATA/train.tsv" --backend gpu $IMPLICIT \
  --factors 64 128 256 --threads 2 --repeats 3 2>&1 | tee "$OUT/sweep_time.txt" | tail -12
# 3. CPU and GPU fits agree after 5 sweeps, device memory against fit_bytes, a full
#    evaluation's time
timeout 110 python3 -m bench.gpu_check --data "$DATA/train.tsv" --test "$DATA/test.tsv" \
  --factors 64 128 256 --threads 2 --out "$OUT/gpu_check.json" 2>&1 \
  | tee "$OUT/gpu_check.txt" | tail -8
