"""notebooks/pepnet_colab_tpu.ipynb runs top to bottom on CPU and shows the report.

The notebook is executed with nbclient in a ``python3`` kernel, with the quick demo
preset, a step cap and a temporary workdir, all passed through environment variables
that the notebook reads (the kernel inherits this process's environment).
"""

import os
from pathlib import Path

import pytest

from conftest import cli_env

nbformat = pytest.importorskip('nbformat', reason='nbformat is not installed (pip install -e ".[test]")')
nbclient = pytest.importorskip('nbclient', reason='nbclient is not installed (pip install -e ".[test]")')
pytest.importorskip('ipykernel', reason='ipykernel is not installed (pip install -e ".[test]")')

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / 'notebooks' / 'pepnet_colab_tpu.ipynb'
DOMAINS = ('all', '0', '1', '2', '4')


def cell_text(cell) -> str:
  """Everything a code cell printed or displayed as text."""
  parts = []
  for out in cell.get('outputs', []):
    if out.get('output_type') == 'stream':
      parts.append(out.get('text', ''))
    elif 'data' in out:
      parts.append(out['data'].get('text/plain', ''))
  return ''.join(parts)


def tagged(nb, tag):
  cells = [c for c in nb.cells if tag in c.get('metadata', {}).get('tags', [])]
  assert len(cells) == 1, f'expected one cell tagged {tag!r}, found {len(cells)}'
  return cells[0]


def test_committed_notebook_has_no_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == 'code':
      assert not cell.outputs and cell.execution_count is None, cell.get('id')


@pytest.mark.slow  # executes the whole notebook in a kernel (~25 s); the demo's CLI path is tested end to end in test_end_to_end.py
def test_notebook_runs_on_cpu(tmp_path, monkeypatch):
  from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
  try:
    KernelSpecManager().get_kernel_spec('python3')
  except NoSuchKernel:
    pytest.skip('no python3 Jupyter kernel (python -m ipykernel install --user)')
  workdir = tmp_path / 'notebook_run'
  # The kernel inherits this process's environment: the tests' one (conftest.cli_env).
  env = cli_env(PEPNET_NOTEBOOK_QUICK='1', PEPNET_NOTEBOOK_STEPS='20',
                PEPNET_NOTEBOOK_WORKDIR=str(workdir))
  for k, v in env.items():
    if os.environ.get(k) != v:
      monkeypatch.setenv(k, v)
  monkeypatch.delenv('PEPNET_REPO_URL', raising=False)
  monkeypatch.delenv('PEPNET_REPO_DIR', raising=False)

  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(nb, kernel_name='python3', timeout=600,
                                   resources={'metadata': {'path': str(NOTEBOOK.parent)}})
  try:
    client.execute()
  except nbclient.exceptions.CellExecutionError as e:  # names the cell and its traceback
    pytest.fail(f'notebook cell failed:\n{e}')

  for cell in nb.cells:
    if cell.cell_type == 'code':
      errors = [o for o in cell.outputs if o.get('output_type') == 'error']
      assert not errors, (cell.get('id'), errors)

  install = cell_text(nb.cells[[c.get('id') for c in nb.cells].index('install')])
  assert 'nothing to fetch' in install, install

  table = cell_text(tagged(nb, 'report-table'))
  assert 'is_click' in table and 'long_view' in table, table
  rows = [line.split() for line in table.splitlines()]
  domains = {r[0] for r in rows if len(r) >= 3 and r[1] == 'is_click'}
  assert set(DOMAINS) <= domains, table

  png_cell = tagged(nb, 'report-png')
  assert any('image/png' in o.get('data', {}) for o in png_cell.outputs), 'no image displayed'
  assert (workdir / 'report.png').is_file()
  assert (workdir / 'report.json').is_file()
