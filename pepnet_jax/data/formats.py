"""Data formats: one ``DataFormat`` record per dataset layout, registered by its own module.

A new format is ONE file. Put ``pepnet_jax/data/<name>.py`` next to ``kuairand.py`` (or any
importable module), give it the reader functions, and end it with::

    formats.register(formats.DataFormat(name='<name>', read_splits=..., input_files=...,
                                        read_file=..., domain_column=..., ...))

``config.data.format='<name>'`` then finds it: ``get`` imports ``pepnet_jax.data.<name>`` on
first use, so nothing else needs an edit. A format outside this package is named by its import
path, ``config.data.format='my_pkg.scene_csv'``: ``get`` imports ``my_pkg.scene_csv``, which
must register the format under that same full name (``name=__name__`` does it). One rule, so
that a format name is always the registry key and two packages cannot collide.

The empty ``config.data`` fields (tasks, domains, splits, domain_column, group_column,
features, groups) take the record's defaults; see ``features.spec_from_config``.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # the readers import features; this module imports nothing of ours,
    # not even for type names (the spec arguments are ``features.DataSpec``)
    from pathlib import Path

    import numpy as np
    import pandas as pd

_NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$')
_REGISTRY: dict[str, 'DataFormat'] = {}


@dataclasses.dataclass(frozen=True)
class DataFormat:
    """What the data layer needs to know about one format.

    read_splits(data_config, spec) -> {split: raw frame}: training / evaluation input. The
      frames hold every column the spec names (features' columns, tasks, domain and group
      columns); rows of domains outside ``spec.domains`` are dropped (and counted).
    input_files(data_config, spec) -> [Path]: the files read_splits reads; their fingerprints
      key the columnar cache, so it must name every one (and raise on a missing one).
    read_file(path, data_dir, spec, data_config) -> (frame, key columns): one file for predict
      mode, all rows in order; the key columns ({name: array}) are what the predictions file
      holds before its p_<task> columns (KuaiRand: user_id, video_id, time_ms, tab).
    domain_column, group_column: default raw columns of the domain and of the GAUC groups.
    known_domains: every value the domain column can hold (a value outside is a data error,
      not a filtered row); None = any value.
    tasks, domains: default label columns and kept domain values (domain-index order).
    splits: default ``config.data.splits``; None when the reader ignores it.
    features(), groups(): the preset feature dicts and gate groups.
    entities: {entity: raw columns that come with it} (its id and its side columns), for
      training the out-of-vocabulary rows (cold_start.py); {} = no entity is ever dropped.
    read_chunks(data_config, spec, only=None, progress=None, shared=None) -> iterator of
      (split, frame): optional, for data that does not fit in memory: the rows of read_splits
      (of the splits in ``only``, or all) in chunks, each split's chunks in row order;
      ``progress`` (pipeline.IngestProgress) gets (rows so far, bytes into the current file)
      as it reads; ``shared`` is one dict for both passes of a build (to read side tables
      once). Without it the cache is built from read_splits' whole frames.
    read_file_chunks(path, data_dir, spec, data_config) -> iterator of (frame, key columns):
      optional, predict mode on files of any size: read_file's rows in chunks, in order.
    side_tables(data_config, spec, shared) -> [sidetables.SideTable]: optional, with
      read_chunks: per-entity tables that read_chunks(..., join=False) leaves unjoined; the
      streaming build fits and encodes their features once per table row instead of once
      per log row (sidetables.py).
    """
    name: str
    read_splits: Callable[[Any, Any], 'dict[str, pd.DataFrame]']
    input_files: Callable[[Any, Any], 'list[Path]']
    read_file: Callable[..., 'tuple[pd.DataFrame, dict[str, np.ndarray]]']
    domain_column: str
    group_column: str
    tasks: tuple[str, ...]
    domains: tuple[Any, ...]
    features: Callable[[], list]
    groups: Callable[[], dict]
    known_domains: tuple[Any, ...] | None = None
    splits: Mapping[str, Any] | None = dataclasses.field(default=None, hash=False)
    entities: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict,
                                                                hash=False)
    read_chunks: Callable[..., Any] | None = None
    read_file_chunks: Callable[..., Any] | None = None
    side_tables: Callable[..., Any] | None = None

    def __post_init__(self):
        where = f'DataFormat(name={self.name!r})'
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f'{where}: the name must be a module-like name (letters, digits, '
                             '"_", parts joined by ".")')
        for field in ('read_splits', 'input_files', 'read_file', 'features', 'groups'):
            if not callable(getattr(self, field)):
                raise TypeError(f'{where}.{field} must be callable')
        for field in ('read_chunks', 'read_file_chunks', 'side_tables'):
            if getattr(self, field) is not None and not callable(getattr(self, field)):
                raise TypeError(f'{where}.{field} must be callable or None')
        for field in ('domain_column', 'group_column'):
            if not isinstance(getattr(self, field), str) or not getattr(self, field):
                raise ValueError(f'{where}.{field} must be a column name')
        # Tuples, so that two registrations of the same record compare equal.
        object.__setattr__(self, 'tasks', tuple(self.tasks))
        object.__setattr__(self, 'domains', tuple(self.domains))
        if self.known_domains is not None:
            object.__setattr__(self, 'known_domains', tuple(self.known_domains))
            outside = [d for d in self.domains if d not in self.known_domains]
            if outside:
                raise ValueError(f'{where}: default domains {outside} are not in known_domains')
        if self.splits is not None:
            object.__setattr__(self, 'splits', dict(self.splits))
        object.__setattr__(self, 'entities',
                           {k: tuple(v) for k, v in dict(self.entities).items()})


def register(fmt: DataFormat, replace: bool = False) -> DataFormat:
    """Adds ``fmt`` under ``fmt.name``; returns it. Registering the same record again (a module
    imported twice) is a no-op; another record under a taken name is an error unless
    ``replace``."""
    if not isinstance(fmt, DataFormat):
        raise TypeError(f'register() takes a DataFormat, got {type(fmt).__name__}')
    old = _REGISTRY.get(fmt.name)
    if old is not None and old != fmt and not replace:
        raise ValueError(f'data format {fmt.name!r} is already registered (by '
                         f'{getattr(old.read_splits, "__module__", "?")}); pick another name, '
                         'or pass replace=True')
    _REGISTRY[fmt.name] = fmt
    return fmt


def get(name: str) -> DataFormat:
    """The format ``config.data.format`` names, importing the module that registers it.

    Looks in the registry; else imports ``pepnet_jax.data.<name>`` (a plain name) or the
    module ``<name>`` itself (a dotted import path) and looks again.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f'config.data.format={name!r} must be a format name; registered: '
                         f'{names()}')
    if name in _REGISTRY:
        return _REGISTRY[name]
    module = name if '.' in name else f'pepnet_jax.data.{name}'
    imported = _import(module) if _NAME_RE.match(name) else None
    if name in _REGISTRY:
        return _REGISTRY[name]
    if imported is not None:
        mine = [n for n in _REGISTRY if _REGISTRY[n].read_splits.__module__ == module]
        rule = ("a format named by its import path must be registered under that full name "
                "(DataFormat(name=__name__, ...))" if '.' in name else
                'a module in pepnet_jax/data must register its format under its file name')
        raise ValueError(f'config.data.format={name!r}: imported the module {module}; it '
                         f'registered {mine if mine else "no format"}, but {rule}')
    raise ValueError(
        f'config.data.format={name!r} is not a registered data format; registered: {names()}. '
        'A format is a module that calls pepnet_jax.data.formats.register(DataFormat(...)): '
        'pepnet_jax/data/<name>.py, found by its name, or any module, named by its import '
        "path ('my_pkg.my_format', registered under that full name)")


def _import(module: str):
    """Imports ``module``; None when it does not exist (errors inside it propagate)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        # Only the module itself (or a parent package) missing means "no such format"; a
        # format module whose own import fails must show that error.
        if e.name and (module == e.name or module.startswith(e.name + '.')):
            return None
        raise


def names() -> list[str]:
    """Registered format names, sorted; every module of pepnet_jax.data is imported first so
    that the built-in formats (which register on import) are listed too."""
    import pepnet_jax.data as package
    for info in pkgutil.iter_modules(package.__path__):
        try:
            importlib.import_module(f'{package.__name__}.{info.name}')
        except Exception:  # noqa: BLE001 -- a broken module is reported when it is asked for
            pass
    return sorted(_REGISTRY)
