"""``python -m pepnet_jax.sweep``: the sweep and search runner.

The command keeps the name it has had since the first release; its code lives in
``pepnet_jax.sweeps.cli``.
"""

import sys

from pepnet_jax.sweeps.cli import main

if __name__ == '__main__':
  sys.exit(main())
