"""``python -m pepnet_jax.synth --out DIR --rows N``: see ``generator.main``."""

import sys

from pepnet_jax.synth.generator import main

sys.exit(main())
