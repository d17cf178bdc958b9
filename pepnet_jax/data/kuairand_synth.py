"""The KuaiRand-format generator, now the package ``pepnet_jax.synth`` (one module per step
of the simulation). This name stays for existing imports and for the command line
``python -m pepnet_jax.data.kuairand_synth``."""

from __future__ import annotations

import sys

from pepnet_jax.synth import *  # noqa: F401,F403
from pepnet_jax.synth.exposures import _sample_rows  # noqa: F401
from pepnet_jax.synth.generator import main
from pepnet_jax.synth.labels import _calibrate, _draw_labels  # noqa: F401
from pepnet_jax.synth.world import _World  # noqa: F401

if __name__ == '__main__':
  sys.exit(main())
