r"""The paper's protocol on generated data: train on 10 days, validate on day 11, test on day 12.

Run (from the repository root):
  python run.py --config experiments/paper_protocol.py --workdir runs/paper_protocol

Days 2022-04-08..04-17 train, 04-18 valid, 04-19 test, from a generated
KuaiRand-format dataset of 1,000,000 log rows (about 32k rows a day). For
the real logs use `experiments/kuairand.py:paper_protocol`. Prints the test
day's AUC / GAUC / logloss per task x tab.
Presets (comma-separated): paper_lr, rows=N, epochs=N.
"""

from pepnet_jax import configs


def get_config(preset: str = ''):
  c = configs.synthetic_experiment(rows=1_000_000)
  c.data.splits = dict(train=('20220408', '20220417'), valid=('20220418', '20220418'),
                       test=('20220419', '20220419'))
  return configs.apply_preset(c, preset, __file__)
