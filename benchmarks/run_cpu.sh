#!/usr/bin/env bash
# The CPU benchmark table of the README: every figure there comes from this script.
# Usage: bash benchmarks/run_cpu.sh [OUT_DIR]   (about 10 minutes on 2 cores; run on a quiet machine)
set -euo pipefail
out=${1:-docs/results}
mkdir -p "$out"
json="$out/bench_cpu.json"
rm -f "$json"
b() { python -m pepnet_jax.bench --steps 20 --repeats 5 --out "$json" --append "$@"; }
b --workloads small,large,xl --updates sparse --peak            # paper structure, row-sparse
b --workloads small,large --updates dense                       # dense AdaGrad for contrast
b --workloads small --task_gates separate                       # the peer's gate structure
b --workloads small --dtypes bfloat16                           # bfloat16 towers and gates
XLA_FLAGS=--xla_force_host_platform_device_count=8 \
  b --workloads small,large --devices 8 --png "$out/bench_cpu.png"   # 8 virtual CPU devices
