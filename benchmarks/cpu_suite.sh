#!/usr/bin/env bash
# The CPU figures of benchmarks/RESULTS.md, one after another on a quiet machine (about an
# hour on 2 cores). Logs and JSON go to ${1:-bench-out}/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-out}
mkdir -p "$out"
py=${PYTHON:-.venv/bin/python}
run() { name=$1; shift; echo "== $name: $*"; "$@" 2>&1 | tee "$out/$name.log"; }

run mlp_fashion   $py benchmarks/bench_mlp_cpu.py --epochs 20 --json "$out/mlp_fashion.json"
run mem_cnn       $py benchmarks/mem_cnn_step.py
run conv_cnn      $py benchmarks/bench_cnn_cpu.py --mnist-epoch --samples 6000 --json "$out/conv_cnn.json"
run rnn           $py benchmarks/bench_rnn_cpu.py --threads 2
run cnn_fashion   $py examples/mnist_cnn.py --dataset fashion-mnist --epochs 12 --backend numpy --torch
run lstm_fashion  $py examples/rnn_rows.py --dataset fashion-mnist --epochs 10 --backend numpy --torch
run gru_fashion   $py examples/rnn_rows.py --cell gru --dataset fashion-mnist --epochs 10 --backend numpy --torch
