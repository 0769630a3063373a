#!/usr/bin/env bash
# One run on a GPU machine answers everything about gpudl's CUDA kernels: the gpu-marked tests
# on CuPy arrays, then benchmarks/bench_gpu.py (checks against NumPy, timings beside PyTorch),
# then the mnist_cnn summary. About 5 minutes on an H100; the steps' timeouts (150 + 240 + 180 s, plus the installs)
# keep even the worst case under a 10-minute call.
#
# Needs, in the checkout, the numpy 2.4 wheel in .whl/ (git-ignored; carry it to the machine):
# numba 0.68's CUDA target fails under numpy 2.5. Fetch it where a registry is reachable with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     -d .whl numpy==2.4.6
# Logs go to $OUT when it is set. make test already ran every line of bench_gpu.py on the CPU
# (NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_gpu.py --dry-run), so only CuPy is new here.
set -uo pipefail
cd "$(dirname "$0")/.."

LOG_DIR="${OUT:-/tmp}"
mkdir -p "$LOG_DIR"
PY=python3

shopt -s nullglob
wheels=(.whl/numpy-*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
    $PY -m pip install -q --no-index --no-deps --target /tmp/site "${wheels[@]}" \
        || { echo "gpu_check: installing ${wheels[*]} into /tmp/site failed" >&2; exit 1; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
else
    echo "gpu_check: no .whl/numpy-*.whl here; using the machine's numpy (numba 0.68 fails" \
         "under numpy 2.5: see the header of this script)" >&2
fi

# kernels/ installs as gpudl.kernels, so the checkout needs an editable install, not PYTHONPATH
if ! $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . \
        > "$LOG_DIR/gpu_pip.log" 2>&1; then
    # an old setuptools cannot do it: lay out gpudl/ with kernels/ inside it under /tmp instead
    echo "gpu_check: pip install -e . failed (log: $LOG_DIR/gpu_pip.log); using a /tmp copy" >&2
    rm -rf /tmp/gpudl_tree && mkdir -p /tmp/gpudl_tree
    cp -r gpudl /tmp/gpudl_tree/gpudl && ln -s "$PWD/kernels" /tmp/gpudl_tree/gpudl/kernels
    export PYTHONPATH=/tmp/gpudl_tree${PYTHONPATH:+:$PYTHONPATH}
fi

$PY - <<'EOF' || exit 1
import sys
import numpy, numba
from numba import cuda
import gpudl.kernels.activation  # noqa: F401  (the package mapping works)
ok = cuda.is_available()
print(f"gpu_check: numpy {numpy.__version__}, numba {numba.__version__}, "
      f"CUDA available to numba: {ok}")
sys.exit(0 if ok else 1)
EOF

unset NUMBA_ENABLE_CUDASIM
start=$(date +%s)
echo "gpu_check: pytest -m gpu tests (log: $LOG_DIR/gpu_tests.log)"
timeout 150 $PY -m pytest -q -m gpu -p no:cacheprovider tests > "$LOG_DIR/gpu_tests.log" 2>&1
tests_rc=$?
tail -15 "$LOG_DIR/gpu_tests.log"
echo "gpu_check: tests exit $tests_rc after $(( $(date +%s) - start )) s"

# mnist_cnn on the CuPy backend beside PyTorch eager on CUDA (same process, same data), when
# Fashion-MNIST travelled with the checkout (the GPU machine has no network): copy
# /usr/share/datasets/fashion-mnist/*.gz into the git-ignored .gpu/fashion-mnist/ and carry ".gpu"
cnn_rc=0
if [ -f .gpu/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "gpu_check: mnist_cnn, 12 epochs of Fashion-MNIST on CuPy and in PyTorch (log: $LOG_DIR/gpu_cnn.log)"
    timeout 240 $PY examples/mnist_cnn.py --backend cupy --torch --epochs 12 --batch-size 128 \
        --data-dir .gpu/fashion-mnist > "$LOG_DIR/gpu_cnn.log" 2>&1
    cnn_rc=$?
    tail -4 "$LOG_DIR/gpu_cnn.log"
else
    echo "gpu_check: no .gpu/fashion-mnist/: mnist_cnn on CuPy not run" >&2
fi

# the bench prints its table last, so it ends this script's output too
echo "gpu_check: benchmarks/bench_gpu.py (log: $LOG_DIR/gpu_bench.log)"
timeout 180 $PY benchmarks/bench_gpu.py 2>&1 | tee "$LOG_DIR/gpu_bench.log"
bench_rc=${PIPESTATUS[0]}
if [ -f "$LOG_DIR/gpu_cnn.log" ]; then
    echo
    echo "mnist_cnn, Fashion-MNIST, 12 epochs, batch 128: gpudl on CuPy beside PyTorch eager on CUDA"
    grep -E "^(test accuracy|PyTorch test accuracy|median epoch)" "$LOG_DIR/gpu_cnn.log"
fi
echo "gpu_check: tests exit $tests_rc, mnist_cnn exit $cnn_rc, bench exit $bench_rc"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && [ "$cnn_rc" -eq 0 ]
