# From the repository root, after the demo (its generated data in runs/demo/data); seed 0 is
# docs/results/demo (d856dbc at 128, 1952470 at 624):
#   bash docs/results/epnet_hidden/demo_seeds.sh > docs/results/epnet_hidden/demo_seeds.log 2>&1
D=runs/demo/data
for spec in "w0_s1:0:1" "w128_s1:128:1" "w0_s2:0:2" "w128_s2:128:2"; do
  IFS=: read name w s <<< "$spec"
  echo "=== $name $(date +%T)"
  /usr/bin/time -f "wall %e s" python run.py --config experiments/demo.py --workdir runs/demoseeds/$name \
     --config.data.dir=$D --config.data.cache_dir=runs/demoseeds/cache --config.model.epnet_hidden=$w --config.train.seed=$s 2>&1 \
     | grep -E "valid @|mean over tasks|wall|Error|error"
done
echo DONE $(date +%T)
