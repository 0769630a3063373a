#!/usr/bin/env bash
# One short run on a GPU machine answers everything about gpudl's GPU path, in at most about
# 8 minutes, with a table printed last whatever failed:
#   1. preflight (60 s): versions, where NVVM was found, one kernel compiled, ReLU and the fused
#      softmax-CE launched on CuPy arrays and checked against NumPy; a failure stops the run
#      with one clear line;
#   2. the gpu-marked tests on CuPy arrays (150 s, 60 s a test);
#   3. micro-timings (40 s): launch cost, dropout masks three ways, float() of a 0-d array;
#   4. mnist_cnn on CuPy beside PyTorch eager on CUDA, 3 epochs of Fashion-MNIST (120 s);
#   5. the kernel table against PyTorch/cuDNN, TF32 off and on (150 s).
#
# How to run it through the device tool: copy Fashion-MNIST's four .gz files into the
# git-ignored .gpu/fashion-mnist/ (from /usr/share/datasets/fashion-mnist, Debian's
# dataset-fashion-mnist), then run `bash benchmarks/gpu_check.sh` with carry [".gpu"] and
# timeout_s 540. Nothing is pip-installed there (the machine's setuptools may reject the
# project's metadata): the checkout is made importable as it is, by a shadow tree under /tmp in
# which gpudl/ holds links to gpudl's files plus kernels -> ../kernels, first on PYTHONPATH.
# NumPy 2.5 needs no carried wheel: gpudl restores the np.row_stack alias numba-cuda 0.30.4
# asks for. A numpy wheel in .whl/ is still installed first if present (a fallback).
#
# Logs and results go to $OUT when set, else ./gpu-out/ (six files: preflight.log, tests.log,
# micro.log, cnn.log, bench.log, summary.txt); each step writes its log as it runs, so a step
# killed by its timeout keeps what it printed. Every step runs under `timeout -s INT`: Python
# sees Ctrl-C and the bench prints the rows it has.
#
# `--dry-run` runs every step on the CPU: the CuPy stand-in of tests/fakecupy under Numba's CUDA
# simulator, tiny sizes, a few tests (make test runs it, so the first GPU run is not the
# script's first run). Times in a dry run mean nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DRY=0
if [ "${1:-}" = "--dry-run" ]; then
    DRY=1
fi
OUT_DIR="${OUT:-$ROOT/gpu-out}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
PY="${PY:-python3}"
SUMMARY="$OUT_DIR/summary.txt"
: > "$SUMMARY"
ROWS=()

# ---- the importable checkout ---------------------------------------------------------------
TREE="$(mktemp -d /tmp/gpudl_tree.XXXXXX)"
mkdir -p "$TREE/gpudl"
for entry in "$ROOT"/gpudl/*; do
    ln -s "$entry" "$TREE/gpudl/$(basename "$entry")"
done
ln -s "$ROOT/kernels" "$TREE/gpudl/kernels"
export PYTHONPATH="$TREE${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DRY" = 1 ]; then
    export NUMBA_ENABLE_CUDASIM=1
    export PYTHONPATH="$ROOT/tests/fakecupy:$PYTHONPATH"
else
    unset NUMBA_ENABLE_CUDASIM
    if [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda ]; then
        export CUDA_HOME=/usr/local/cuda  # numba-cuda may not infer it when nvrtc comes from a wheel
    fi
    shopt -s nullglob
    wheels=(.whl/numpy-*.whl)
    shopt -u nullglob
    if [ ${#wheels[@]} -gt 0 ]; then
        "$PY" -m pip install -q --no-index --no-deps --target /tmp/gpudl_site "${wheels[@]}" \
            && export PYTHONPATH="/tmp/gpudl_site:$PYTHONPATH"
    fi
fi

summary() {
    {
        echo
        echo "gpu_check summary ($([ "$DRY" = 1 ] && echo "DRY RUN on the CPU" || echo "GPU"), $(date -u +%Y-%m-%dT%H:%MZ))"
        printf '%-12s %-8s %6s  %s\n' step status secs log
        for row in "${ROWS[@]}"; do
            echo "$row"
        done
    } | tee -a "$SUMMARY"
    for log in micro bench; do
        if [ -f "$OUT_DIR/$log.log" ]; then
            echo
            # each Python step prints its own table last
            sed -n '/^gpudl \(micro-timings\|kernels vs\)/,$p' "$OUT_DIR/$log.log"
        fi
    done | tee -a "$SUMMARY"
    if [ -f "$OUT_DIR/cnn.log" ]; then
        echo
        grep -E "^(backend|test accuracy|PyTorch test accuracy|median epoch)" "$OUT_DIR/cnn.log" | tee -a "$SUMMARY"
    fi
    rm -rf "$TREE"
}
trap summary EXIT

# step NAME LIMIT_S LOG COMMAND...: run it under timeout -s INT, log as it goes, record a row
step() {
    local name=$1 limit=$2 log=$3 rc status start secs
    shift 3
    echo "gpu_check: $name (limit ${limit} s, log $OUT_DIR/$log)"
    start=$(date +%s)
    timeout -s INT -k 15 "$limit" "$@" > "$OUT_DIR/$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    case $rc in
        0) status=ok ;;
        124|130|137) status=TIMEOUT ;;
        *) status="exit $rc" ;;
    esac
    tail -n 6 "$OUT_DIR/$log"
    ROWS+=("$(printf '%-12s %-8s %6d  %s' "$name" "$status" "$secs" "$log")")
    return $rc
}

dry_flag=()
if [ "$DRY" = 1 ]; then
    dry_flag=(--dry-run)
fi

if ! step preflight 60 preflight.log "$PY" benchmarks/gpu_preflight.py "${dry_flag[@]}"; then
    line=$(grep -m1 "preflight FAILED" "$OUT_DIR/preflight.log" || tail -n 1 "$OUT_DIR/preflight.log")
    echo "gpu_check: stopped: ${line:-preflight failed with no message}" | tee -a "$SUMMARY"
    exit 1
fi

failed=0
if [ "$DRY" = 1 ]; then
    tests=(tests/test_transfers.py -k "prelu or per_training_step and hello")
else
    tests=(tests)
fi
GPUDL_TEST_TIMEOUT=60 step tests 150 tests.log "$PY" -m pytest -q -m gpu -p no:cacheprovider "${tests[@]}" \
    || failed=1
step micro 40 micro.log "$PY" benchmarks/gpu_micro.py "${dry_flag[@]}" || failed=1

if [ -f .gpu/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    cnn=(examples/mnist_cnn.py --backend cupy --epochs 3 --batch-size 128 --data-dir .gpu/fashion-mnist)
    if [ "$DRY" = 1 ]; then
        cnn+=(--limit 10 --epochs 1 --batch-size 10)
    else
        cnn+=(--torch)
    fi
    step mnist_cnn 120 cnn.log "$PY" "${cnn[@]}" || failed=1
else
    echo "gpu_check: no .gpu/fashion-mnist/ in the checkout: mnist_cnn not run" | tee "$OUT_DIR/cnn.log"
    ROWS+=("$(printf '%-12s %-8s %6s  %s' mnist_cnn "no data" - cnn.log)")
    rm -f "$OUT_DIR/cnn.log"
fi

step bench 150 bench.log "$PY" benchmarks/bench_gpu.py "${dry_flag[@]}" || failed=1
exit $failed
