# The EPNet gate width runs, one after the other (from the repository root, in the project venv):
#   bash docs/results/epnet_hidden/run.sh quality > docs/results/epnet_hidden/run.log 2>&1
#   bash docs/results/epnet_hidden/run.sh demo > docs/results/epnet_hidden/demo_seeds.log 2>&1
# quality: experiments/kuairand.py on the quality data (benchmarks/time_to_quality.py makes it
#   when absent); its width-624 seed-0 run is the time-to-quality pair's "now" run at 8250f06.
# demo: experiments/demo.py on the demo's generated data (run the demo first: runs/demo/data);
#   its seed-0 runs are docs/results/demo (d856dbc at 128, 1952470 at 624).
# Each spec is NAME:EPNET_HIDDEN:SEED.
case "$1" in
  quality) config=experiments/kuairand.py; D=data_cache/synth_2200000_u27285_v7583_a6510_s0_g3
           root=runs/epq; specs="ep64_s0:64:0 ep128_s0:128:0 ep0_s1:0:1 ep64_s1:64:1 ep128_s1:128:1" ;;
  demo)    config=experiments/demo.py; D=runs/demo/data
           root=runs/demoseeds; specs="w0_s1:0:1 w128_s1:128:1 w0_s2:0:2 w128_s2:128:2" ;;
  *) echo "usage: bash $0 quality|demo" >&2; exit 2 ;;
esac
for spec in $specs; do
  IFS=: read name w s <<< "$spec"
  echo "=== $name $(date +%T)"
  /usr/bin/time -f "wall %e s" python run.py --config $config --workdir $root/$name \
     --config.data.dir=$D --config.data.cache_dir=$root/cache --config.model.epnet_hidden=$w --config.train.seed=$s 2>&1 \
     | grep -E "valid @|mean over tasks|wall|Error|error"
done
echo DONE $(date +%T)
