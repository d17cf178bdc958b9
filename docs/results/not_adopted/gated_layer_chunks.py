"""The first PPNet-gated tower layer, forward and backward, over the whole batch or in chunks.

Question: does cutting the batch into chunks (a scan that sums the parameter gradients) keep
the [7, B, 624] gate and gated-input arrays in cache and speed the layer up? Run from the
repository root:  python docs/results/not_adopted/gated_layer_chunks.py
Prints min / median of 10 calls each; the whole batch is timed first and last.
"""

import time

import jax
import jax.numpy as jnp

from pepnet_jax.models.layers import broadcast_tasks

T, H, W, O, B = 7, 64, 624, 256, 4096  # tasks, gate hidden, width of E, tower width, rows


def layer(h, k, c, x, w0, r):
  """sum(r * relu(((2 sigmoid(h K + c)) * x) W0)): the gate, its product and the tower matmul."""
  kt = k.reshape(H, T, W).transpose(1, 0, 2)
  gate = 2 * jax.nn.sigmoid(jnp.einsum('tbh,thw->tbw', broadcast_tasks(h, T), kt)
                            + c.reshape(T, 1, W))
  y = jnp.einsum('tbi,tio->tbo', gate * broadcast_tasks(x, T), w0)
  return jnp.sum(jax.nn.relu(y) * r)


def chunked(n):
  def grads(h, k, c, x, w0, r):
    hs, xs = h.reshape(n, -1, H), x.reshape(n, -1, W)
    rs = r.reshape(T, n, -1, O).transpose(1, 0, 2, 3)

    def body(acc, part):
      dh, dk, dc, dx, dw = jax.grad(layer, argnums=(0, 1, 2, 3, 4))(part[0], k, c, part[1],
                                                                     w0, part[2])
      return (acc[0] + dk, acc[1] + dc, acc[2] + dw), (dh, dx)
    zeros = (jnp.zeros_like(k), jnp.zeros_like(c), jnp.zeros_like(w0))
    (dk, dc, dw), (dh, dx) = jax.lax.scan(body, zeros, (hs, xs, rs))
    return dh.reshape(B, H), dk, dc, dx.reshape(B, W), dw
  return jax.jit(grads)


def timed(name, fn, args):
  jax.block_until_ready(fn(*args))
  ts = []
  for _ in range(10):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t)
  ts.sort()
  print(f'{name:10s} min {ts[0] * 1e3:6.1f} ms, median {ts[5] * 1e3:6.1f} ms')


def main():
  ks = jax.random.split(jax.random.key(0), 5)
  args = (jax.nn.relu(jax.random.normal(ks[0], (B, H))), 0.1 * jax.random.normal(ks[1], (H, T * W)),
          jnp.zeros((T * W,)), jax.random.normal(ks[2], (B, W)),
          0.04 * jax.random.normal(ks[3], (T, W, O)), jax.random.normal(ks[4], (T, B, O)))
  whole = jax.jit(jax.grad(layer, argnums=(0, 1, 2, 3, 4)))
  timed('whole', whole, args)
  for n in (2, 4, 8, 16):
    timed(f'{n} chunks', chunked(n), args)
  timed('whole', whole, args)


if __name__ == '__main__':
  main()
