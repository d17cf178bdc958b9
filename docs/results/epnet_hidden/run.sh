# The EPNet gate width runs (run from the repository root, in the project venv):
#   bash docs/results/epnet_hidden/run.sh > docs/results/epnet_hidden/run.log 2>&1
# D: the quality data (benchmarks/time_to_quality.py makes it when absent). The width-624
# seed-0 run is the time-to-quality pair's "now" run at 8250f06.
D=data_cache/synth_2200000_u27285_v7583_a6510_s0_g3
for spec in "ep64_s0:64:0" "ep128_s0:128:0" "ep0_s1:0:1" "ep64_s1:64:1" "ep128_s1:128:1"; do
  IFS=: read name w s <<< "$spec"
  echo "=== $name $(date +%T)"
  /usr/bin/time -f "wall %e s" python run.py --config experiments/kuairand.py --workdir runs/epq/$name \
     --config.data.dir=$D --config.data.cache_dir=runs/epq/cache --config.model.epnet_hidden=$w --config.train.seed=$s 2>&1 \
     | grep -E "valid @|mean over tasks|wall|Error|error" 
done
echo DONE $(date +%T)
