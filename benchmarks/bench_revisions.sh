#!/usr/bin/env bash
# The kuairand training-step benchmark at an older revision and at this checkout, one after
# the other on this machine, with the same benchmark code and the same generated data:
#
#   bash benchmarks/bench_revisions.sh OLD_REV [OUT_DIR] [-- extra pepnet_jax.bench args]
#
# The older revision is checked out into a temporary worktree and imported in place of this
# one (PYTHONPATH); the benchmark file itself is this checkout's, so both revisions run the
# same workload (it uses only the library's public training functions). Writes
# OUT_DIR/bench_kuairand_<rev>.json and OUT_DIR/bench_kuairand_now.json (default OUT_DIR:
# docs/results/bench_revisions).
set -euo pipefail
cd "$(dirname "$0")/.."
old="${1:?usage: bench_revisions.sh OLD_REV [OUT_DIR] [-- bench args]}"; shift
out="docs/results/bench_revisions"
if [[ $# -gt 0 && "$1" != "--" ]]; then out="$1"; shift; fi
[[ "${1:-}" == "--" ]] && shift
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(--batch_sizes 1024,4096 --steps 20 --repeats 5)
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'git worktree remove --force "$tmp/tree" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add --detach "$tmp/tree" "$old" >/dev/null
sha="$(git rev-parse --short "$old")"
cp pepnet_jax/bench.py "$tmp/bench_now.py"
echo "== $old ($sha)"
PYTHONPATH="$tmp/tree" python "$tmp/bench_now.py" --workloads kuairand --peak \
  --out "$out/bench_kuairand_$sha.json" "${args[@]}"
echo "== this checkout ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- pepnet_jax || echo '+changes'))"
python "$tmp/bench_now.py" --workloads kuairand --peak --out "$out/bench_kuairand_now.json" "${args[@]}"
