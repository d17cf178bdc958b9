#!/usr/bin/env bash
# The accelerator check: on whatever JAX backend this machine has (GPU, TPU or CPU), times
# the bench workloads, profiles the KuaiRand training and evaluation steps (device-busy
# against wall time, host-fed against device-only examples/s, the top kernels) and runs one
# short time-to-quality run, writing every figure under OUT_DIR:
#
#   bash benchmarks/accelerator_check.sh [OUT_DIR]     # default docs/results/accelerator
#
# Runs from a checkout without installing it (PYTHONPATH). A machine that reaches no package
# index and lacks some of the dependencies gets them as wheels in .whl/ beside this checkout,
# made on a machine that reaches PyPI with `bash benchmarks/accelerator_check.sh --wheels`
# (ml-collections and tensorboardX: pure-Python wheels; the GPU images seen here have jax,
# flax, optax, orbax-checkpoint, pandas and matplotlib). Environment: TTQ_ROWS (rows of the
# time-to-quality data, default 600000), BATCHES (default 1024,4096,16384).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--wheels" ]]; then
  mkdir -p .whl
  python3 -m pip download -q --no-deps --only-binary=:all: -d .whl ml-collections tensorboardX
  ls .whl
  exit 0
fi
out="${1:-docs/results/accelerator}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/pepnet_site .whl/*.whl
  export PYTHONPATH="/tmp/pepnet_site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
py=python3
log() { echo "== $* ($(date +%H:%M:%S))"; }
log "backend"
$py - <<PY | tee "$out/backend.txt"
import jax, platform, os
print('jax', jax.__version__, 'backend', jax.default_backend(), 'devices', jax.devices())
print('host', platform.processor() or platform.machine(), os.cpu_count(), 'cores')
PY
log "bench: small workload and the KuaiRand step at ${BATCHES:=1024,4096,16384}"
$py -m pepnet_jax.bench --workloads small,kuairand --batch_sizes "$BATCHES" --steps 20 \
  --repeats 3 --peak --out "$out/bench.json" | tee "$out/bench.txt"
log "profile: KuaiRand training step"
$py benchmarks/profile_step.py --batch_size 4096 --out "$out/profile_train.json" \
  | tee "$out/profile_train.txt"
log "profile: evaluation step"
$py benchmarks/profile_step.py --batch_size 16384 --eval --out "$out/profile_eval.json" \
  | tee "$out/profile_eval.txt"
log "time to quality (${TTQ_ROWS:=600000} generated rows)"
$py benchmarks/time_to_quality.py --run "$($py -c 'import jax; print(jax.default_backend())')" \
  --rows "$TTQ_ROWS" --out "$out/time_to_quality" | tail -8 | tee "$out/time_to_quality.txt"
if [[ -n "${OUT:-}" ]]; then  # the device tool's result folder
  cp "$out"/*.json "$out"/*.txt "$OUT"/ 2>/dev/null || true
  cp "$out"/time_to_quality/time_to_quality.json "$OUT"/ttq.json 2>/dev/null || true
fi
log "done: $out"
