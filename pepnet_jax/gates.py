"""``python -m pepnet_jax.gates``: a trained PEPNet's gates summarised.

The command keeps the name it has had since the first release; its code lives in
``pepnet_jax.evaluation.gates``.
"""

from pepnet_jax.evaluation.gates import main

if __name__ == '__main__':
  main()
