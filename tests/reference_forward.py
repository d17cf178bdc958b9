"""An independent float64 NumPy forward pass of every model in ``pepnet_jax/models``.

Written from the papers' equations, not from the Flax code: nothing here imports
``pepnet_jax.models`` or ``pepnet_jax.evaluation.gates``. The model code was read only for
what a reference cannot guess: the parameter tree's names and shapes, the order
of concatenations, and the switches of ``config.model``. The tests
(``tests/test_reference_forward.py``) feed it a Flax model's own parameters and a
batch and compare the logits.

Each function's docstring writes out, in the paper's notation, the equation it implements
(the formula identifies it; no equation numbers are quoted):

* PEPNet (Chang et al., KDD 2023, arXiv 2302.01115), section 3: the Gate NU
  x' = ReLU(x W + b), delta = gamma * sigmoid(x' W' + b'); EPNet
  delta_domain = U_ep(E(F_d) (+) sg(E)), O_ep = delta_domain (x) E; PPNet
  O_prior = E(F_u) (+) E(F_i) (+) E(F_a), delta_task = U_pp(O_prior (+) sg(O_ep)),
  O_pp^l = delta_task^l (x) H^l, H^{l+1} = f(O_pp^l W^l + b^l).
* MMoE (Ma et al., KDD 2018): y_t = h^t(f^t(x)), f^t(x) = sum_k g^t(x)_k f_k(x),
  g^t(x) = softmax(W_gt x).
* PLE / CGC (Tang et al., RecSys 2020): g^k(x) = w^k(x) S^k(x), w^k(x) = softmax(W_g^k x),
  S^k = [task k's experts, shared experts]; level j reads level j-1's outputs.
* STAR (Sheng et al., CIKM 2021): partitioned normalization, star-topology FC
  (W_p* = W_p (x) W, b_p* = b_p + b), auxiliary network whose logit is added.
* Wide & Deep (Cheng et al., DLRS 2016): sigma(w_wide^T [x, phi(x)] + w_deep^T a^(lf) + b).
* Shared-Bottom (Caruana 1997), single-task DNNs, logistic regression: the usual
  definitions.

Conventions this reference assumes of the project (its documented contract, not its
code): id 0 of a multi-valued field is padding; a multi-valued field's vector is the
mean of its non-padding ids' rows (the zero vector when it has none); a dense field
``x`` becomes ``x * k + b`` with a learned ``k, b`` of the embedding width; E is the
concatenation, in feature order, of the fields with ``shared=True`` (every field when
``config.model.domain_in_input``); every model returns one logit per task.

The stop-gradient sg() of the paper is the identity in a forward pass, so it does not
appear here; dropout is off (evaluation); the compute ``dtype`` is ignored (float64).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

TABLE_KINDS = ('categorical', 'bucket', 'multi')


# ---- plumbing --------------------------------------------------------------------


def as_f64(tree) -> Any:
  """A nested dict of arrays (jax or numpy) as float64 numpy arrays."""
  if isinstance(tree, Mapping):
    return {k: as_f64(v) for k, v in tree.items()}
  return np.asarray(tree, dtype=np.float64)


def get(cfg, key: str, default=None):
  """``cfg[key]`` for a dict or a ConfigDict, ``default`` when absent."""
  try:
    return cfg[key]
  except (KeyError, AttributeError):
    return default


def check_keys(params: Mapping, expected: set, where: str) -> None:
  """The parameter names at one level are exactly ``expected`` (no missing, no extra)."""
  got = set(params)
  if got != set(expected):
    raise AssertionError(f'{where}: parameters {sorted(got)}, the reference expects '
                         f'{sorted(expected)} (missing {sorted(set(expected) - got)}, '
                         f'extra {sorted(got - set(expected))})')


def dense(x: np.ndarray, p: Mapping) -> np.ndarray:
  """An affine layer ``x W + b`` (``p['kernel']`` [in, out], ``p['bias']`` [out])."""
  k, b = p['kernel'], p['bias']
  if k.ndim != 2 or k.shape[0] != x.shape[-1] or b.shape != (k.shape[1],):
    raise AssertionError(f'dense: input width {x.shape[-1]}, kernel {k.shape}, bias {b.shape}')
  return x @ k + b


def stacked_dense(x: np.ndarray, p: Mapping, n: int) -> np.ndarray:
  """Layer n of a stack of independent affine layers (kernel [N, in, out], bias [N, out])."""
  return dense(x, {'kernel': p['kernel'][n], 'bias': p['bias'][n]})


def logit(y: np.ndarray) -> np.ndarray:
  """The single column of a logit layer's output [B, 1] -> [B]; a wider layer is a bug."""
  if y.shape[-1] != 1:
    raise AssertionError(f'logit layer: {y.shape[-1]} outputs per task, not 1')
  return y[:, 0]


def sigmoid(x: np.ndarray) -> np.ndarray:
  return 0.5 * (1.0 + np.tanh(0.5 * x))


def softmax(x: np.ndarray) -> np.ndarray:
  """Softmax over the last axis."""
  z = np.exp(x - x.max(-1, keepdims=True))
  return z / z.sum(-1, keepdims=True)


def activation(name: str):
  """f of the hidden layers. 'gelu' is the tanh approximation (Flax's ``nn.gelu`` default)."""
  def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
  table = {'relu': lambda x: np.maximum(x, 0.0), 'gelu': gelu,
           'silu': lambda x: x * sigmoid(x), 'tanh': np.tanh}
  return table[name]


# ---- embeddings (PEPNet's E, the shared input of every baseline) ----------------


def is_shared(info, mc) -> bool:
  """Whether a field joins E: ``shared=True``, or every field with domain_in_input."""
  return bool(info.shared or get(mc, 'domain_in_input', False))


def table_kinds(infos):
  return [f for f in infos if f.kind in TABLE_KINDS]


def field_vector(info, table, pool: Mapping, ids: np.ndarray) -> np.ndarray:
  """One field's [B, d] vector: a table row, the mean of a multi-valued field's
  non-padding rows, or a dense value's ``x * k + b``."""
  if info.kind == 'dense':
    p = pool[f'dense_{info.name}']
    return dense(np.asarray(ids, np.float64)[:, None], p)
  if info.kind == 'multi':
    ids = np.asarray(ids)
    out = np.zeros((ids.shape[0], table.shape[1]))
    for b in range(ids.shape[0]):
      real = [i for i in ids[b] if i > 0]
      if real:
        out[b] = table[real].mean(0)
    return out
  return table[np.asarray(ids)]


def field_vectors(infos, tables: Mapping, pool: Mapping, features: Mapping) -> dict:
  """{field: [B, d]} for every feature (E(F) of the paper, one slot per field)."""
  return {f.name: field_vector(f, tables.get(f.name), pool, features[f.name]) for f in infos}


def check_embed(infos, params: Mapping, width: int | None, sub: tuple = ()) -> None:
  """One table per id feature (dense ones have none), [rows >= vocab, width]."""
  check_keys(params['embed'], {f.name for f in table_kinds(infos)}, 'embed')
  for f in table_kinds(infos):
    t = params['embed'][f.name]
    for s in sub:
      t = t[s]
    if t.ndim != 2 or t.shape[0] < f.vocab_size or (width and t.shape[1] != width):
      raise AssertionError(f'embed/{f.name}{sub}: shape {t.shape}, vocab {f.vocab_size}')


def shared_input(mc, infos, fields: Mapping) -> np.ndarray:
  """PEPNet's E: the concatenation of the shared fields' vectors, in feature order."""
  return np.concatenate([fields[f.name] for f in infos if is_shared(f, mc)], -1)


def fields_and_e(mc, infos, params, features, sub: str | None = None):
  """(fields, E) from ``embed/<f>`` (or ``embed/<f>/<sub>``) and ``pool``."""
  tables = {n: (t[sub] if sub else t) for n, t in params['embed'].items()}
  fields = field_vectors(infos, tables, params.get('pool', {}), features)
  return fields, shared_input(mc, infos, fields)


def pool_names(infos) -> set:
  dense_fields = [f for f in infos if f.kind == 'dense']
  return {'pool'} if dense_fields else set()


# ---- PEPNet ------------------------------------------------------------------------


def gate_nu(x: np.ndarray, hidden: Mapping, out: Mapping, gamma: float) -> np.ndarray:
  """PEPNet's Gate NU: x' = ReLU(x W + b); delta = gamma * sigmoid(x' W' + b')."""
  h = np.maximum(dense(x, hidden), 0.0)
  return gamma * sigmoid(dense(h, out))


def epnet(mc, fields, e, domain_inputs, p):
  """EPNet: delta_domain = U_ep(E(F_d) (+) sg(E)); O_ep = delta_domain * E.
  Returns (delta_domain, O_ep); U_ep's hidden width is ``epnet_hidden`` (0 = |E|)."""
  x = np.concatenate([fields[n] for n in domain_inputs] + [e], -1)
  hidden_width = get(mc, 'epnet_hidden', 0) or e.shape[-1]
  if p['hidden']['kernel'].shape[1] != hidden_width:
    raise AssertionError(f'EPNet hidden width {p["hidden"]["kernel"].shape[1]} != {hidden_width}')
  delta = gate_nu(x, p['hidden'], p['out'], float(mc.gamma))
  return delta, delta * e


def ppnet_gates(mc, params, layer: int, gate_in: np.ndarray, num_tasks: int,
                width: int, hidden: int) -> np.ndarray:
  """PPNet's gate: delta_task^l = U_pp^l(O_prior (+) sg(O_ep)), as T task gates
  [T, B, width]. 'split' (the paper): one Gate NU whose T*width outputs are cut into
  T consecutive slices, slice t for task t; 'separate': one Gate NU per task."""
  gamma = float(mc.gamma)
  if mc.task_gates == 'split':
    p = params[f'ppnet_gates_{layer}']
    check_keys(p, {'hidden', 'kernel', 'bias'}, f'ppnet_gates_{layer}')
    units = [(p['hidden'], p)]  # the output layer's kernel/bias sit beside 'hidden'
  else:
    per_task = [params[f'ppnet_gates_{layer}_{t}'] for t in range(num_tasks)]
    units = [(p['hidden'], p['out']) for p in per_task]
  for h, _ in units:
    if h['kernel'].shape[1] != hidden:
      raise AssertionError(f'PPNet layer {layer}: hidden width {h["kernel"].shape[1]} != {hidden}')
  if mc.task_gates == 'split':
    g = gate_nu(gate_in, *units[0], gamma)  # [B, T*width]
    return np.stack([g[:, t * width:(t + 1) * width] for t in range(num_tasks)])
  return np.stack([gate_nu(gate_in, h, out, gamma) for h, out in units])


def pepnet_param_names(mc, infos, num_layers: int, num_tasks: int) -> set:
  names = {'embed'} | pool_names(infos) | {f'towers_{l}' for l in range(num_layers)}
  if mc.use_epnet:
    names.add('epnet_gate')
  if mc.use_ppnet:
    names |= ({f'ppnet_gates_{l}' for l in range(num_layers)} if mc.task_gates == 'split'
              else {f'ppnet_gates_{l}_{t}' for l in range(num_layers) for t in range(num_tasks)})
  if get(mc, 'task_transfer', False):
    names.add('task_transfer')
  return names


def task_transfer(w: np.ndarray, z: np.ndarray) -> np.ndarray:
  """Not in the paper (pepnet.py's extension): z_t + sum_{s != t} W[s, t] z_s."""
  return z + z @ (w * (1.0 - np.eye(w.shape[0])))


def pepnet_towers(mc, params, o_ep, gate_in, num_tasks: int, pp_hidden: int, trace: dict):
  """PPNet's towers, per layer l (H_0 = O_ep, the last layer the logit layer):
  O_pp^l = delta_task^l (x) H^l; H^{l+1} = f(O_pp^l W^l + b^l) (no f on the logits).
  Returns the last layer's outputs [T, B, width]."""
  act = activation(mc.activation)
  num_layers = len(mc.tower) + 1
  h = np.stack([o_ep] * num_tasks)  # H_0 of each task tower, [T, B, |E|]
  for l in range(num_layers):
    if mc.use_ppnet:
      gate = ppnet_gates(mc, params, l, gate_in, num_tasks, h.shape[-1], pp_hidden)
      trace[f'ppnet_gate_{l}'] = gate
      h = gate * h
    p = params[f'towers_{l}']
    h = np.stack([stacked_dense(h[t], p, t) for t in range(num_tasks)])
    if l < num_layers - 1:
      h = act(h)
  return h


def pepnet_logits(mc, params, out: np.ndarray, domain: np.ndarray, num_domains: int):
  """[T, B, width] tower outputs -> logits [B, T]: with domain towers the logit layer
  has one output per domain and a row takes its own domain's; then task_transfer."""
  if mc.domain_towers:
    if out.shape[-1] != num_domains:
      raise AssertionError(f'domain towers: {out.shape[-1]} outputs for {num_domains} domains')
    logits = out[:, np.arange(out.shape[1]), domain].T
  else:
    if out.shape[-1] != 1:
      raise AssertionError(f'logit layer: {out.shape[-1]} outputs per task, not 1')
    logits = out[..., 0].T
  if get(mc, 'task_transfer', False):
    logits = task_transfer(params['task_transfer'], logits)
  return logits


def pepnet(mc, infos, spec, params, features, domain, trace: dict | None = None):
  """PEPNet logits [B, T]: E -> EPNet (O_ep) -> T towers whose every layer's input,
  H_0 = O_ep and the logit layer's included, is scaled by that layer's PPNet task gate.
  ``trace`` (a dict) receives the gate values."""
  g = spec.groups
  priors = tuple(g.get('user', ())) + tuple(g.get('item', ())) + tuple(g.get('author', ()))
  num_tasks = len(spec.tasks)
  check_keys(params, pepnet_param_names(mc, infos, len(mc.tower) + 1, num_tasks), 'pepnet')
  check_embed(infos, params, mc.embed_dim)
  trace = {} if trace is None else trace
  fields, e = fields_and_e(mc, infos, params, features)
  o_ep = e
  if mc.use_epnet:
    trace['epnet_gate'], o_ep = epnet(mc, fields, e, tuple(g.get('domain', ())),
                                      params['epnet_gate'])
  # PPNet's gate input O_prior (+) sg(O_ep), O_prior = E(F_u) (+) E(F_i) (+) E(F_a);
  # its hidden width is ppnet_hidden (0 = the width of O_prior).
  o_prior = [fields[n] for n in priors]
  gate_in = np.concatenate(o_prior + [o_ep], -1)
  pp_hidden = get(mc, 'ppnet_hidden', 0) or sum(x.shape[-1] for x in o_prior)
  out = pepnet_towers(mc, params, o_ep, gate_in, num_tasks, pp_hidden, trace)
  return pepnet_logits(mc, params, out, domain, len(spec.domains))


# ---- baselines ---------------------------------------------------------------------


def mlp(x: np.ndarray, p: Mapping, num_layers: int, act) -> np.ndarray:
  """``dense_0 .. dense_{n-1}``, each followed by the activation (the last one too)."""
  check_keys(p, {f'dense_{i}' for i in range(num_layers)}, 'mlp')
  for i in range(num_layers):
    x = act(dense(x, p[f'dense_{i}']))
  return x


def expert(x: np.ndarray, p: Mapping, n: int, num_layers: int, act) -> np.ndarray:
  """Expert n of a bank stored stacked (``dense_i`` kernels [N, in, out]): an MLP
  with the activation after every layer."""
  for i in range(num_layers):
    x = act(stacked_dense(x, p[f'dense_{i}'], n))
  return x


def task_towers(inputs, params, num_layers: int, num_tasks: int, act) -> np.ndarray:
  """Tower t (layers ``towers_i``, kernel slice t) on inputs[t]: activation between
  layers, the last one the width-1 logit. -> [B, T]."""
  out = []
  for t in range(num_tasks):
    h = inputs[t]
    for i in range(num_layers):
      h = stacked_dense(h, params[f'towers_{i}'], t)
      if i < num_layers - 1:
        h = act(h)
    out.append(logit(h))
  return np.stack(out, -1)


def shared_bottom(mc, infos, spec, params, features, domain):
  """Shared-Bottom: y_t = tower_t(bottom(E)), one MLP shared by the T tasks."""
  t, nt = len(spec.tasks), len(mc.tower) + 1
  check_keys(params, {'embed', 'bottom_mlp'} | pool_names(infos)
             | {f'towers_{i}' for i in range(nt)}, mc.name)
  check_embed(infos, params, mc.embed_dim)
  act = activation(mc.activation)
  _, e = fields_and_e(mc, infos, params, features)
  bottom = mlp(e, params['bottom_mlp'], len(mc.bottom), act)
  return task_towers([bottom] * t, params, nt, t, act)


def single_task(mc, infos, spec, params, features, domain):
  """T independent DNNs (widths bottom + tower, then a logit) sharing only E."""
  t, nt = len(spec.tasks), len(mc.bottom) + len(mc.tower) + 1
  check_keys(params, {'embed'} | pool_names(infos) | {f'towers_{i}' for i in range(nt)}, mc.name)
  check_embed(infos, params, mc.embed_dim)
  _, e = fields_and_e(mc, infos, params, features)
  return task_towers([e] * t, params, nt, t, activation(mc.activation))


def mmoe(mc, infos, spec, params, features, domain):
  """MMoE: f^t(x) = sum_k g^t(x)_k f_k(x), g^t(x) = softmax(W_g^t x (+ b));
  y_t = h^t(f^t(x)) with x = E."""
  t, nt, k = len(spec.tasks), len(mc.tower) + 1, mc.num_experts
  check_keys(params, {'embed', 'experts', 'gates'} | pool_names(infos)
             | {f'towers_{i}' for i in range(nt)}, mc.name)
  check_embed(infos, params, mc.embed_dim)
  act = activation(mc.activation)
  _, e = fields_and_e(mc, infos, params, features)
  experts = [expert(e, params['experts'], n, len(mc.bottom), act) for n in range(k)]
  mixed = []
  for task in range(t):
    g = softmax(stacked_dense(e, params['gates'], task))  # [B, K]
    mixed.append(sum(g[:, [n]] * experts[n] for n in range(k)))
  return task_towers(mixed, params, nt, t, act)


def ple_level(mc, p, x_tasks, x_shared, final: bool, num_tasks: int, act):
  """One extraction network. CGC: g^t = w^t(x_t) S^t(x) with
  w^t = softmax(W_g^t x_t), S^t = [task t's experts, shared experts]; PLE:
  task experts and gates read the previous level's task output, shared experts the
  shared output, and (not at the last level) a shared gate mixes all experts."""
  s, k, n = mc.specific_experts, mc.num_experts, len(mc.bottom)
  expected = {'shared_experts', 'task_gates'} | ({'specific_experts'} if s else set())
  check_keys(p, expected | (set() if final else {'shared_gate'}), 'ple level')
  shared = [expert(x_shared, p['shared_experts'], j, n, act) for j in range(k)]
  specific = [[expert(x_tasks[t], p['specific_experts'], t * s + j, n, act) for j in range(s)]
              for t in range(num_tasks)]
  out = []
  for t in range(num_tasks):
    w = softmax(stacked_dense(x_tasks[t], p['task_gates'], t))  # [B, S + K], own first
    pool = specific[t] + shared
    out.append(sum(w[:, [j]] * pool[j] for j in range(s + k)))
  if final:
    return out, None
  everything = [x for per_task in specific for x in per_task] + shared
  w = softmax(dense(x_shared, p['shared_gate']))  # [B, T*S + K]
  return out, sum(w[:, [j]] * everything[j] for j in range(len(everything)))


def ple(mc, infos, spec, params, features, domain):
  """PLE: ``ple_levels`` extraction networks, then y_t = t^t(g^{t,N})."""
  t, nt = len(spec.tasks), len(mc.tower) + 1
  check_keys(params, {'embed'} | pool_names(infos) | {f'levels_{l}' for l in range(mc.ple_levels)}
             | {f'towers_{i}' for i in range(nt)}, mc.name)
  check_embed(infos, params, mc.embed_dim)
  act = activation(mc.activation)
  _, e = fields_and_e(mc, infos, params, features)
  x_tasks, x_shared = [e] * t, e
  for l in range(mc.ple_levels):
    x_tasks, x_shared = ple_level(mc, params[f'levels_{l}'], x_tasks, x_shared,
                                  l == mc.ple_levels - 1, t, act)
  return task_towers(x_tasks, params, nt, t, act)


def partitioned_norm(x: np.ndarray, p: Mapping, domain: np.ndarray, eps: float = 1e-5):
  """STAR's partitioned normalization:
  (gamma * gamma_p) * (x - mean) / sqrt(var + eps) + (beta + beta_p), with the
  project's documented adaptation: mean and variance of each row over its features
  (no batch statistics)."""
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  x_hat = (x - mean) / np.sqrt(var + eps)
  return (p['scale'] * p['domain_scale'][domain]) * x_hat + p['bias'] + p['domain_bias'][domain]


def star_fc(x: np.ndarray, p: Mapping, domain: np.ndarray) -> np.ndarray:
  """STAR's star-topology FC: domain p's layer is W_p* = W_p (.) W, b_p* = b_p + b."""
  out = np.zeros((x.shape[0], p['shared_kernel'].shape[1]))
  for b, d in enumerate(np.asarray(domain)):
    w = p['shared_kernel'] * p['domain_kernel'][d]
    out[b] = x[b] @ w + p['shared_bias'] + p['domain_bias'][d]
  return out


def star(mc, infos, spec, params, features, domain):
  """STAR adapted to T tasks: PN(E) -> star FC layers (activation after each) -> a
  per-task logit layer; plus the auxiliary network's per-task logit, an MLP on the
  domain-side fields (the one-hot domain when there are none)."""
  t = len(spec.tasks)
  domain = np.asarray(domain)
  check_keys(params, {'embed', 'norm', 'out', 'aux', 'aux_out'} | pool_names(infos)
             | {f'star_{i}' for i in range(len(mc.tower))}, mc.name)
  check_embed(infos, params, mc.embed_dim)
  act = activation(mc.activation)
  fields, e = fields_and_e(mc, infos, params, features)
  h = partitioned_norm(e, params['norm'], domain)
  for i in range(len(mc.tower)):
    h = act(star_fc(h, params[f'star_{i}'], domain))
  main = np.stack([logit(stacked_dense(h, params['out'], task)) for task in range(t)], -1)
  names = tuple(spec.groups.get('domain', ()))
  if names:
    a = np.concatenate([fields[n] for n in names], -1)
  else:
    a = np.eye(len(spec.domains))[domain]
  aux = dense(mlp(a, params['aux'], 1, act), params['aux_out'])
  return main + aux


def wide_deep(mc, infos, spec, params, features, domain):
  """Wide & Deep per task: b_t + sum_f w_f[id_f, t] (a multi-valued field:
  the sum over its non-padding ids) + deep_t(E), deep = bottom MLP then tower t."""
  t, nt = len(spec.tasks), len(mc.tower) + 1
  check_keys(params, {'embed', 'bottom_mlp', 'wide_bias'} | pool_names(infos)
             | {f'towers_{i}' for i in range(nt)}, mc.name)
  for f in table_kinds(infos):
    check_keys(params['embed'][f.name], {'deep', 'wide'}, f'embed/{f.name}')
  check_embed(infos, params, mc.embed_dim, ('deep',))
  check_embed(infos, params, t, ('wide',))
  act = activation(mc.activation)
  wide = np.broadcast_to(params['wide_bias'], (len(domain), t)).copy()
  for f in table_kinds(infos):
    wide += id_weights(params['embed'][f.name]['wide'], features[f.name], 'sum')
  _, e = fields_and_e(mc, infos, params, features, sub='deep')
  deep = task_towers([mlp(e, params['bottom_mlp'], len(mc.bottom), act)] * t, params, nt, t, act)
  return wide + deep


def id_weights(table: np.ndarray, ids, pool: str) -> np.ndarray:
  """Rows of a per-id weight table; a multi-valued field's non-padding rows summed
  (``pool='sum'``) or averaged (``'mean'``, 0 when the row has no id)."""
  ids = np.asarray(ids)
  if ids.ndim == 1:
    return table[ids]
  out = np.zeros((ids.shape[0], table.shape[1]))
  for b in range(ids.shape[0]):
    real = [i for i in ids[b] if i > 0]
    if real:
      out[b] = table[real].sum(0) / (len(real) if pool == 'mean' else 1)
  return out


def logistic_regression(mc, infos, spec, params, features, domain):
  """LR per task: b_t + sum_f w_f[id_f, t] + sum_d v_d[t] x_d over every feature."""
  t = len(spec.tasks)
  pool = get(mc, 'lr_multi_pool', 'sum')
  dense_fields = [f for f in infos if f.kind == 'dense']
  check_keys(params, {'embed', 'linear'}, mc.name)
  check_keys(params['linear'], {'bias'} | ({'dense_weights'} if dense_fields else set()), 'linear')
  check_embed(infos, params, t)
  out = np.broadcast_to(params['linear']['bias'], (len(domain), t)).copy()
  for i, f in enumerate(dense_fields):
    out += np.asarray(features[f.name], np.float64)[:, None] * params['linear']['dense_weights'][i]
  for f in table_kinds(infos):
    out += id_weights(params['embed'][f.name], features[f.name], pool)
  return out


MODELS = {'pepnet': pepnet, 'shared_bottom': shared_bottom, 'dnn': shared_bottom,
          'single_task': single_task, 'mmoe': mmoe, 'ple': ple, 'star': star,
          'wide_deep': wide_deep, 'lr': logistic_regression}


def forward(mc, infos, spec, params, features, domain, trace: dict | None = None) -> np.ndarray:
  """Float64 logits [B, T] of the model ``mc.name`` (``config.model``), built for
  ``infos`` (FeatureInfo-like) and ``spec`` (tasks, domains, groups), with the Flax
  model's parameter tree ``params`` on a batch (``features``, ``domain`` [B])."""
  params = as_f64(params)
  features = {k: np.asarray(v) for k, v in features.items()}
  domain = np.asarray(domain)
  if mc.name == 'pepnet':
    return pepnet(mc, infos, spec, params, features, domain, trace)
  return MODELS[mc.name](mc, infos, spec, params, features, domain)
