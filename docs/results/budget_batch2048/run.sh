# The budget recipe at batch 2048 with scale_to_batch's rule (every rate x2, warm-up / 2), two seeds
# (from the repository root, in the project venv; the quality data as time_to_quality.py makes it):
#   bash docs/results/budget_batch2048/run.sh > docs/results/budget_batch2048/run.log 2>&1
D=data_cache/synth_2200000_u27285_v7583_a6510_s0_g3
for s in 0 1; do
  echo "=== b2048_s$s $(date +%T)"
  /usr/bin/time -f "wall %e s" python run.py --config experiments/kuairand.py --workdir runs/b2048/s$s \
     --config.data.dir=$D --config.data.cache_dir=runs/epq/cache --config.train.seed=$s \
     --config.data.batch_size=2048 --config.optim.embedding.lr=1.5 --config.optim.dense.lr=0.004 --config.optim.dense.warmup_steps=50 2>&1 \
     | grep -E "valid @|mean over tasks|wall|Error|error|step .*00/"
done
echo DONE $(date +%T)
