"""``python -m pepnet_jax.aggregate``: a sweep's results tables.

The command keeps the name it has had since the first release; its code lives in
``pepnet_jax.sweeps.aggregate``.
"""

import sys

from pepnet_jax.sweeps.aggregate import main

if __name__ == '__main__':
  sys.exit(main())
