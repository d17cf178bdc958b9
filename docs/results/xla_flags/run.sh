# XLA:CPU flags against the default, the kuairand bench each (run from the repository root):
#   bash docs/results/xla_flags/run.sh > docs/results/xla_flags/run.log 2>&1
# The default runs first and last; flags_none.json is the last run's.
for f in "" "--xla_cpu_prefer_vector_width=512" "--xla_cpu_enable_concurrency_optimized_scheduler=true" "--xla_cpu_use_onednn=true" ""; do
  echo "=== FLAGS: '$f'"
  name=$(echo "${f:-none}" | sed 's/^--//; s/=/_/; s/[^a-z0-9_]/_/g')
  XLA_FLAGS="$f" timeout 600 python -m pepnet_jax.bench --workloads kuairand --batch_sizes 1024,4096 \
      --steps 12 --repeats 3 --out "docs/results/xla_flags/flags_$name.json" 2>&1 | grep -E "^kuairand|error|Error" | head -4
done
echo DONE
