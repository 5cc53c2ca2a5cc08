#!/usr/bin/env bash
# The GPU checks of issue 8 in one command, for a session that is lent a GPU machine.
#
# That machine has numba (with numba-cuda), numpy, h5py, click, pytest and PyTorch, but no
# network, so fastfa travels as a wheel built here first:
#
#   echo /.whl/ >> .git/info/exclude
#   python -m pip wheel --no-deps -w .whl .
#   # device run, carry [".whl"], timeout_s 540:  bash benchmarks/gpu_session.sh
#
# It prints (and writes to $OUT/gpu.txt) the device, the CUDA tests run on the GPU
# (FASTFA_TEST_GPU=1: the simulator tests, unchanged, against the CPU engine), and
# `python -m benchmarks.gpu` (fused and per-kernel fastfa against PyTorch CUDA; a few seconds
# per case on an H100 by estimate, so the full sizes run by default).
set -o pipefail
out=${OUT:-.}
log=$out/gpu.txt
export PYTHONUNBUFFERED=1 FASTFA_TEST_GPU=1
if ls .whl/fastfa-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
else
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
fi
{
    nvidia-smi -L
    python3 -c "import numba, numpy; print('numba', numba.__version__, 'numpy', numpy.__version__)"
} 2>&1 | tee "$log"
timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee -a "$log"
bench_args=${GPU_BENCH_ARGS:-}  # e.g. --quick
timeout 300 python3 -m benchmarks.gpu $bench_args 2>&1 | tee -a "$log"
