"""benchmarks/time_to_quality.py: run specs, the time-stamped validation lines, the table."""

import sys

import pytest

from conftest import load_file


@pytest.fixture(scope='module')
def ttq():
  return load_file('benchmarks/time_to_quality.py', 'time_to_quality')


def test_run_specs_name_a_revision_and_arguments(ttq):
  assert ttq.parse_run('now') == {'name': 'now', 'rev': '', 'args': [], 'cmd': []}
  assert ttq.parse_run('start=rev:e37f8be') == {'name': 'start', 'rev': 'e37f8be', 'args': [],
                                                'cmd': []}
  assert ttq.parse_run('b=rev:HEAD~1=args:--config.data.batch_size=4096 --x=1') == {
      'name': 'b', 'rev': 'HEAD~1', 'args': ['--config.data.batch_size=4096', '--x=1'],
      'cmd': []}
  assert ttq.parse_run('peer=cmd:/venv/bin/python peer.py --cache c') == {
      'name': 'peer', 'rev': '', 'args': [], 'cmd': ['/venv/bin/python', 'peer.py', '--cache', 'c']}
  with pytest.raises(SystemExit, match='rev:REV'):
    ttq.parse_run('b=HEAD')
  with pytest.raises(SystemExit, match='stands alone'):
    ttq.parse_run('p=cmd:x=args:--y=1')
  with pytest.raises(SystemExit, match='NAME'):
    ttq.parse_run('a b=rev:x')


def test_validations_are_stamped_and_the_best_is_chosen(ttq, tmp_path):
  script = ("import time\n"
            "print('step 10/30 | loss 1.0', flush=True)\n"
            "print('  valid @ 10: mean AUC 0.7000  GAUC 0.6', flush=True); time.sleep(0.3)\n"
            "print('  valid @ 20: mean AUC 0.7500  GAUC 0.6  (best)', flush=True)\n"
            "print('  valid @ 30: mean AUC 0.7400  GAUC 0.6', flush=True)\n")
  run = ttq.timed_run([sys.executable, '-c', script], str(tmp_path), None,
                      str(tmp_path / 'log.txt'))
  assert [v['step'] for v in run['valids']] == [10, 20, 30]
  assert run['valids'][1]['seconds'] >= run['valids'][0]['seconds'] + 0.25
  out = ttq.summarize(dict(run, name='x', rev=''), {'mean': {'auc': 0.76, 'gauc': 0.6},
                                                     'step': 20})
  assert out['best']['step'] == 20 and out['test_mean_auc'] == 0.76
  assert '| x | this checkout | 0.7500 | 20 |' in ttq.table([out])
  assert 'valid @ 20' in (tmp_path / 'log.txt').read_text()


def test_a_failing_run_names_its_log(ttq, tmp_path):
  with pytest.raises(SystemExit, match='log.txt'):
    ttq.timed_run([sys.executable, '-c', 'raise SystemExit(3)'], str(tmp_path), None,
                  str(tmp_path / 'log.txt'))
