"""Shared data fixtures: small logs in the exact KuaiRand format next to the real feature files."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import ml_collections
import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'
KUAIRAND_SHARED = SHARED_DATA / 'kuairand'
ALICCP_SHARED = SHARED_DATA / 'ali-ccp' / 'torch_rechub'

LOG_COLUMNS = ['user_id', 'video_id', 'date', 'hourmin', 'time_ms', 'is_click', 'is_like',
               'is_follow', 'is_comment', 'is_forward', 'is_hate', 'long_view', 'play_time_ms',
               'duration_ms', 'profile_stay_time', 'comment_stay_time', 'is_profile_enter',
               'is_rand', 'tab']
TASKS = ('is_click', 'is_like', 'is_follow', 'is_comment', 'is_forward', 'is_hate', 'long_view')


# In-process tests compile hundreds of small programs and run each for a few steps, so
# LLVM's optimisation of XLA:CPU's generated code is most of their time and buys them
# nothing. Level 0 skips it: the same HLO, the same XLA passes, the same library calls for
# matrix products, IEEE semantics either way (XLA:CPU enables no fast-math by default);
# the default run takes ~15% less time. Set before any JAX backend starts. Subprocesses
# (cli_env) keep the production level unless asked: run.py's runs share the persistent
# cache, so they mostly execute, and level 0's code runs slower. To run every test at the
# production level: XLA_FLAGS=--xla_backend_optimization_level=2 pytest.
XLA_FLAGS_GIVEN = os.environ.get('XLA_FLAGS')
FAST_COMPILE = '--xla_backend_optimization_level=0'
if 'xla_backend_optimization_level' not in (XLA_FLAGS_GIVEN or ''):
    os.environ['XLA_FLAGS'] = ' '.join(filter(None, [XLA_FLAGS_GIVEN, FAST_COMPILE]))

# One persistent XLA compilation cache for every test that runs run.py in a subprocess: a
# later process with the same shapes skips most of its compiling.
COMPILATION_CACHE = REPO / '.pytest_cache' / 'jax_compilation_cache'


def pytest_configure(config):
    """In-process tests share the subprocesses' persistent compilation cache: a program
    compiled by one worker (or an earlier test) is loaded, not compiled again."""
    import jax
    jax.config.update('jax_compilation_cache_dir', str(COMPILATION_CACHE))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


@pytest.fixture(autouse=True)
def _trace_again_under_mutmut_stats():
    """mutmut credits each test with the functions it calls, then runs only those tests
    against a mutant of a function. A jitted function runs its Python once, in the first
    test that traces it; later tests hit JAX's caches and would not be credited, so a
    mutant would skip the tests that could kill it. In mutmut's stats run every test
    therefore starts with JAX's in-memory caches empty (the persistent compilation cache
    still saves the compiling)."""
    if os.environ.get('MUTANT_UNDER_TEST') == 'stats':
        import jax
        jax.clear_caches()
    yield


def import_graph(function_level: bool = True) -> dict[str, set[str]]:
    """{module: the pepnet_jax modules it imports}, over the whole package; with
    ``function_level`` the imports inside functions count too. ``from pkg import sub`` is an
    edge to the submodule, ``from pkg import name`` one to the package."""
    import ast
    root = REPO / 'pepnet_jax'
    files = {'.'.join(p.relative_to(REPO).with_suffix('').parts).removesuffix('.__init__'): p
             for p in root.rglob('*.py')}
    graph = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in (ast.walk(tree) if function_level else tree.body):
            if isinstance(node, ast.ImportFrom) and node.module:
                deps |= {f'{node.module}.{a.name}' if f'{node.module}.{a.name}' in files
                         else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[mod] = {d for d in deps if d in files and d != mod}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` (each as the path that closes it)."""
    state, cycles = {}, []

    def visit(u, stack):
        state[u] = 'open'
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 'open':
                cycles.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v, stack)
        stack.pop()
        state[u] = 'done'

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return cycles


def load_file(rel: str, name: str):
  """The repository file ``rel`` (a benchmark or experiment script, not a package module)
  imported as module ``name``."""
  spec = importlib.util.spec_from_file_location(name, REPO / rel)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def cli_env(*paths: Path | str, cache: bool = True, fast_compile: bool = False,
            **extra: str) -> dict:
    """The one environment for a subprocess of the tests (run.py, a check script): CPU, the
    shared compilation cache (unless ``cache=False``), XLA's production optimisation level
    unless ``fast_compile`` (see FAST_COMPILE above), the repository root (then ``paths``)
    on PYTHONPATH so pepnet_jax imports where it is not installed, and ``extra`` variables."""
    path = os.pathsep.join(filter(None, [*map(str, paths), str(REPO),
                                         os.environ.get('PYTHONPATH')]))
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=path)
    if not fast_compile:
        env.pop('XLA_FLAGS', None)
        if XLA_FLAGS_GIVEN:
            env['XLA_FLAGS'] = XLA_FLAGS_GIVEN
    if cache:
        env.update(JAX_COMPILATION_CACHE_DIR=str(COMPILATION_CACHE),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
    env.update(extra)
    return env


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f'shared data not available: {path} is absent')
    return path


def make_log(n: int, first_date: int, last_date: int, seed: int, tabs=(0, 1, 2, 4, 6),
             extra_videos=(), is_rand: int = 0) -> pd.DataFrame:
    """n rows in the official column order; dates ascending like the real files."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(pd.to_datetime(str(first_date)), pd.to_datetime(str(last_date)))
    dates = np.sort(rng.choice(days.strftime('%Y%m%d').astype(int), n))
    videos = rng.integers(0, 7583, n)
    if len(extra_videos):
        videos[rng.random(n) < 0.1] = rng.choice(np.asarray(extra_videos), 1)[0]
    hourmin = rng.integers(0, 24, n) * 100 + rng.integers(0, 60, n)
    clicks = rng.integers(0, 2, n)
    return pd.DataFrame({
        'user_id': rng.integers(0, 400, n), 'video_id': videos, 'date': dates,
        'hourmin': hourmin, 'time_ms': 1649376000000 + np.arange(n) * 1000,
        'is_click': clicks, 'is_like': rng.integers(0, 2, n) * clicks,
        'is_follow': (rng.random(n) < .05).astype(int), 'is_comment': (rng.random(n) < .05).astype(int),
        'is_forward': (rng.random(n) < .05).astype(int), 'is_hate': (rng.random(n) < .02).astype(int),
        'long_view': rng.integers(0, 2, n), 'play_time_ms': rng.integers(0, 60000, n),
        'duration_ms': rng.integers(3000, 300000, n), 'profile_stay_time': 0,
        'comment_stay_time': 0, 'is_profile_enter': 0, 'is_rand': is_rand,
        'tab': rng.choice(np.asarray(tabs), n),
    })[LOG_COLUMNS]


def write_kuairand_dir(directory: Path, version: str = 'pure', n_train: int = 300,
                       n_test: int = 300, n_random: int = 0, seed: int = 0,
                       parts: int = 1, real: bool = False) -> Path:
    """A KuaiRand folder: generated logs + symlinks to the real Pure feature files.

    Without /work/shared (real=False only), feature files from the project's generator stand
    in; tests that need specific real rows pass real=True and skip instead.
    """
    directory.mkdir(parents=True, exist_ok=True)
    users, videos = directory / f'user_features_{version}.csv', directory / f'video_features_basic_{version}.csv'
    if (KUAIRAND_SHARED / 'user_features_pure.csv').exists():
        os.symlink(KUAIRAND_SHARED / 'user_features_pure.csv', users)
        os.symlink(KUAIRAND_SHARED / 'video_features_basic_pure.csv', videos)
    elif real:
        require(KUAIRAND_SHARED / 'user_features_pure.csv')
    else:
        synth = pytest.importorskip('pepnet_jax.data.kuairand_synth',
                                    reason='no shared KuaiRand files and no generator')
        synth.make_users(np.random.default_rng(seed), 400).to_csv(users, index=False)
        synth.make_videos(np.random.default_rng(seed + 1), 7583, 600).to_csv(videos, index=False)
    logs = {'log_standard_4_08_to_4_21': make_log(n_train, 20220408, 20220421, seed),
            'log_standard_4_22_to_5_08': make_log(n_test, 20220422, 20220508, seed + 1,
                                                  extra_videos=(9_000_001,))}
    if n_random:
        logs['log_random_4_22_to_5_08'] = make_log(n_random, 20220422, 20220508, seed + 2,
                                                   tabs=(1, 2), is_rand=1)
    for stem, frame in logs.items():
        if parts == 1:
            frame.to_csv(directory / f'{stem}_{version}.csv', index=False)
        else:
            for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
                frame.iloc[chunk].to_csv(directory / f'{stem}_{version}_part{i + 1}.csv', index=False)
    return directory


def kuairand_config(directory: Path, **overrides) -> ml_collections.ConfigDict:
    from pepnet_jax.data.kuairand import kuairand_features, kuairand_groups
    cfg = dict(format='kuairand', dir=str(directory), version='auto', cache_dir='',
               splits=dict(train=('20220408', '20220421'), valid=('20220422', '20220428'),
                           test=('20220429', '20220508')),
               random_log_split='', tabs=(0, 1, 2, 4), tasks=TASKS, group_column='user_id',
               max_rows=0, features=kuairand_features(), groups=kuairand_groups(),
               batch_size=64, eval_batch_size=128, seed=0)
    cfg.update(overrides)
    return ml_collections.ConfigDict(cfg)


@pytest.fixture
def kuairand_dir(tmp_path) -> Path:
    return write_kuairand_dir(tmp_path / 'kuairand')


def aliccp_config(directory: Path, **overrides) -> ml_collections.ConfigDict:
    from pepnet_jax.data.aliccp import aliccp_features, aliccp_groups
    cfg = dict(format='aliccp', dir=str(directory), version='auto', cache_dir='',
               splits=dict(train='ali_ccp_train', valid='ali_ccp_val', test='ali_ccp_test'),
               tabs=(1, 2, 3), tasks=('click', 'purchase'), group_column='101', max_rows=0,
               features=aliccp_features(), groups=aliccp_groups(), batch_size=16,
               eval_batch_size=32, seed=0)
    cfg.update(overrides)
    return ml_collections.ConfigDict(cfg)


class ReadCounter:
    """Counts the KuaiRand format's full reads of the CSVs (a cache hit reads none): calls of
    read_splits, and of read_chunks over every split (a build's encoding pass)."""

    def __init__(self, monkeypatch):
        import dataclasses

        from pepnet_jax.data import formats
        self.calls = 0
        fmt = formats.get('kuairand')

        def whole(*a, **k):
            self.calls += 1
            return fmt.read_splits(*a, **k)

        def chunks(*a, only=None, **k):  # noqa: E306
            self.calls += only is None
            return fmt.read_chunks(*a, only=only, **k)
        monkeypatch.setitem(formats._REGISTRY, 'kuairand',
                            dataclasses.replace(fmt, read_splits=whole, read_chunks=chunks))
