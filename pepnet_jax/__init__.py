"""pepnet-jax: PEPNet and multi-task / multi-domain baselines in JAX and Flax."""

from pepnet_jax import hostmem

hostmem.keep_freed_memory()  # before any JAX backend exists; see hostmem.py
