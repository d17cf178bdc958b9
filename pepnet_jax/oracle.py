"""``python -m pepnet_jax.oracle``: the generator's ceiling beside a report.

The command keeps the name it has had since the first release; its code lives in
``pepnet_jax.evaluation.oracle``.
"""

from pepnet_jax.evaluation.oracle import main

if __name__ == '__main__':
  main()
