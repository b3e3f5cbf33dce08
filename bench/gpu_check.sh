#!/usr/bin/env bash
# Issue 18: everything the GPU backend needs measured, in one call on the device machine.
#
# Here, first (the datasets beside the repository do not travel):
#   mkdir -p gpu-data && cp -r ../shared/data/gowalla gpu-data/ && echo /gpu-data/ >> .git/info/exclude
# Then one device call, with carry=["gpu-data"] and timeout_s 600 (the steps' own
# timeouts add up to 570 s; trim --factors or --repeats to leave room for a rerun):
#   bash bench/gpu_check.sh
# That machine has no network but CuPy (CUDA 13), Numba, SciPy, pytest and hypothesis:
# rgals is installed without its dependencies or a build environment, so the `gpu`
# extra's cupy-cuda12x is never fetched; `pytest` and `python bench/...` then import the
# installed package (kernels/ becomes rgals.kernels only when installed). What it prints
# and measures goes to $OUT (at most 8 files come back): the versions, the GPU test
# cases, sweep_time's table, gpu_check's rows and JSON.
set -uo pipefail
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
pip install --no-deps --no-build-isolation -q . 2>&1 | tail -3
DATA=gpu-data/gowalla
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python -c "import cupy, numba, scipy, numpy; print('cupy', cupy.__version__, 'numba', numba.__version__, 'scipy', scipy.__version__, 'numpy', numpy.__version__)"
  python -c "import implicit.gpu; print('implicit gpu', implicit.gpu.HAS_CUDA)" 2>&1 | tail -1
} > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"
# 1. the GPU cases of the suite (the backend fixture adds "gpu" when a device is there)
timeout 150 pytest -q -p no:cacheprovider -k "gpu" tests 2>&1 | tail -40 > "$OUT/tests_gpu.txt"
tail -3 "$OUT/tests_gpu.txt"
# 2. seconds per sweep: GPU against the CPU backend on 2 threads in the same run
timeout 240 python -m bench.sweep_time --data "$DATA/train.tsv" --backend gpu \
  --factors 64 128 256 512 --threads 2 --repeats 4 2>&1 | tee "$OUT/sweep_time.txt" | tail -20
# 3. CPU and GPU fits agree, device memory against fit_bytes, a full evaluation's time
timeout 180 python -m bench.gpu_check --data "$DATA/train.tsv" --test "$DATA/test.tsv" \
  --factors 64 128 256 512 --threads 2 --out "$OUT/gpu_check.json" 2>&1 | tee "$OUT/gpu_check.txt" | tail -12
