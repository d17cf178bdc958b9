r"""Bytes a row of the columnar cache, with the full KuaiRand preset (the README's disk plan).

The cache stores fixed-width columns (int32 ids, float32 dense values and labels, the
domain and the GAUC group key), so its size grows linearly with the rows: measured here on a
small generated dataset, the bytes a row hold for any number of rows, plus the vocabularies
(which grow with the ids seen, not the rows).

  python benchmarks/cache_size.py --rows 200000 --out docs/results/scale/cache_size.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def folder_bytes(root: Path, suffix: str = '') -> int:
  return sum(p.stat().st_size for p in root.rglob('*') if p.is_file() and p.name.endswith(suffix))


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--rows', type=int, default=200_000, help='generated log rows')
  ap.add_argument('--out', default='', help='JSON file for the figures')
  a = ap.parse_args(argv)
  from pepnet_jax import configs
  from pepnet_jax.data import pipeline, prepare
  from pepnet_jax.data.resolve import resolve
  with tempfile.TemporaryDirectory() as tmp:
    c = configs.base_config()  # the full KuaiRand preset: 40 fields, 7 tasks
    configs.use_generated_data(c, a.rows, users=2_000, videos=1_500, authors=500)
    c.data.dir, c.data.cache_dir = os.path.join(tmp, 'data'), os.path.join(tmp, 'cache')
    data = resolve(c.data, tmp)
    prepare.ensure_generated(data)
    datasets, infos, spec, _ = pipeline.load_datasets(data, os.path.join(tmp, 'work'))
    rows = sum(d.num_rows for d in datasets.values())
    cache = Path(c.data.cache_dir)
    total = folder_bytes(cache)
    columns = folder_bytes(cache, '.npy')
    csv = folder_bytes(Path(c.data.dir), '.csv')
    out = dict(generated_rows=a.rows, cached_rows=rows, features=len(spec.features),
               tasks=len(spec.tasks), cache_bytes=total, column_bytes=columns,
               column_bytes_per_row=columns / rows, cache_bytes_per_row=total / rows,
               csv_bytes=csv)
  print(f"{rows:,} cached rows ({len(spec.features)} features, {len(spec.tasks)} tasks): "
        f"columns {columns / rows:.1f} bytes a row, the whole cache {total / rows:.1f} "
        f"(vocabularies included); the CSV logs and feature files {csv / rows:.1f}")
  if a.out:
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
  return out


if __name__ == '__main__':
  main()
