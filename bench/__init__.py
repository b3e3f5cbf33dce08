"""The benchmarks: each script measures rgals as it is (speed, quality, scale) and records
its figures in bench/RESULTS.md. Run them from the repository root as modules, e.g.
`python -m bench.run --dataset health`; their tests are in bench/tests (marker `bench`)."""
