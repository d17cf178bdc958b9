# XLA:CPU's matmul libraries against the default (which runs dots in YNNPACK fusions), the kuairand
# bench each (from the repository root):
#   bash docs/results/xla_flags/run_matmul_libraries.sh > docs/results/xla_flags/run_matmul_libraries.log 2>&1
# The default runs first and last; libs_none.json is the last run's.
for f in "" "--xla_cpu_experimental_ynn_fusion_type=" "--xla_cpu_use_xnnpack=true" \
         "--xla_cpu_experimental_xnn_fusion_type=dot" "--xla_cpu_multi_thread_eigen=false" ""; do
  echo "=== FLAGS: '$f'"
  name=$(echo "${f:-none}" | sed 's/^--//; s/=$/_off/; s/=/_/; s/[^a-z0-9_]/_/g')
  XLA_FLAGS="$f" timeout 600 python -m pepnet_jax.bench --workloads kuairand --batch_sizes 1024,4096 \
      --steps 12 --repeats 3 --out "docs/results/xla_flags/libs_$name.json" 2>&1 | grep -E "^kuairand|error|Error" | sort -u
done
echo DONE
