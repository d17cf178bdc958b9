"""Command line: train, evaluate or predict with an experiment config.

  python run.py --config experiments/demo.py --workdir /tmp/demo
  python run.py --config experiments/kuairand.py --workdir DIR --config.data.dir=PATH
  python run.py --config ... --workdir DIR --mode=evaluate [--step=N]
  python run.py --config ... --workdir DIR --mode=predict --input LOG.csv --output OUT.csv

Errors in the data or the config print one message (exit code 1; the
traceback goes to <workdir>/error.log, or to the screen with --verbose).
SIGTERM / Ctrl-C during training save a checkpoint and exit with 143 / 130;
a non-finite loss exits with 3. Rerun the same command to resume.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file('config', None, 'Experiment config file[:preset].')
flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, logs, reports.')
flags.DEFINE_enum('mode', 'train', ['train', 'evaluate', 'predict'], 'What to do.')
flags.DEFINE_string('input', None, 'predict: a KuaiRand-format log CSV to score.')
flags.DEFINE_string('output', None, 'predict: where to write the scores (CSV).')
flags.DEFINE_integer('step', None, 'evaluate/predict: checkpoint step (default: latest).')
flags.DEFINE_string('split', None, 'evaluate: split to evaluate (default: config.train.report_split).')
flags.DEFINE_bool('verbose', False, 'Show the full traceback of data and config errors.')
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax and jax log every save at INFO
  from pepnet_jax import cli
  code = cli.main(FLAGS.config, FLAGS.workdir, FLAGS.mode, input_path=FLAGS.input,
                  output_path=FLAGS.output, step=FLAGS.step, split=FLAGS.split,
                  verbose=FLAGS.verbose)
  sys.exit(code)


if __name__ == '__main__':
  app.run(main)
