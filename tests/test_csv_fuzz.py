"""Fuzzed CSV damage against the readers: every damaged file gives a DataError that names the
file (and the line at fault), or it reads exactly what the file holds -- never values shifted
between columns, never another exception type.

The generator is a seeded numpy one (hypothesis is no dependency). The expected outcome comes
from an independent reference: Python's csv module plus plain int()/float() rules.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import ml_collections
import numpy as np
import pandas as pd
import pytest

from conftest import kuairand_config, make_log
from pepnet_jax.data import aliccp, errors, kuairand
from pepnet_jax.data.errors import DataError, read_csv_chunks
from pepnet_jax.data.aliccp import aliccp_features, aliccp_groups
from pepnet_jax.features import spec_from_config

INT, FLOAT, LABEL, TEXT, SKIP = 'int', 'float', 'label', 'text', 'skip'
DTYPES = {INT: 'int64', FLOAT: 'float64', LABEL: 'float32', TEXT: str}
SCHEMA = (('uid', INT), ('txt', TEXT), ('x', FLOAT), ('skip', SKIP), ('lab', LABEL),
          ('vid', INT), ('tail', FLOAT))
KINDS = ('clean', 'delete', 'duplicate', 'extra', 'missing', 'wrongtype', 'encoding', 'truncate',
         'empty', 'header_only')
BAD_TOKENS = {INT: ('abc', '1.5', '12a', ''), FLOAT: ('abc', '12a', '1.2.3', '--'),
              LABEL: ('abc', '1x', '0.0.1', 'yes')}
BAD_BYTES = (b'\xff', b'\xc3(', b'\xe9', b'\x80', b'\xed\xa0\x80')


# ------------------------------------------------------------------ generating damaged files


def _cell(rng: np.random.Generator, kind: str) -> str:
    if kind == INT:
        return str(int(rng.integers(-5, 10 ** 9)))
    if kind == FLOAT:
        return '' if rng.random() < 0.1 else repr(round(float(rng.normal()) * 1000, 3))
    if kind == LABEL:
        return str(rng.choice(['0', '1', '1', '']))
    if kind == TEXT:  # commas force quotes; no pandas NA spellings
        return str(rng.choice(['a', 'full_active', '[100,1k)', '20,43', '(50,100]', 'x y', '',
                               'café']))
    return str(rng.choice(['junk', '1,2', '7']))


def _render(fields: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator='').writerow(fields)
    return out.getvalue().encode()


def _split(line: bytes) -> list[str]:
    return next(csv.reader([line.decode()]))


def _damage(rng: np.random.Generator, kind: str, lines: list[bytes], types: dict[str, str],
            term: bytes) -> bytes:
    """Apply one kind of damage (1-3 times) to clean lines (header first); returns the file."""
    header = _split(lines[0])
    lines = list(lines)
    data_line = lambda: int(rng.integers(1, len(lines))) if len(lines) > 1 else 0
    times = int(rng.integers(1, 4))
    if kind == 'empty':
        return b''
    if kind == 'header_only':
        return lines[0] + (term if rng.random() < 0.5 else b'')
    if kind == 'delete':
        for _ in range(times):
            if len(lines) > 1:
                del lines[0 if rng.random() < 0.08 else data_line()]
    elif kind == 'duplicate':
        for _ in range(times):
            src = 0 if rng.random() < 0.2 else data_line()
            lines.insert(int(rng.integers(1, len(lines) + 1)), lines[src])
    elif kind in ('extra', 'missing', 'wrongtype') and len(lines) > 1:
        for _ in range(times):
            i = data_line()
            fields = _split(lines[i])
            if kind == 'extra':
                fields.insert(int(rng.integers(0, len(fields) + 1)),
                              str(rng.choice(['0', '7', 'zz', ''])))
            elif kind == 'missing':
                del fields[int(rng.integers(0, len(fields)))]
            else:
                targets = [j for j, c in enumerate(header) if types.get(c) in BAD_TOKENS]
                j = int(rng.choice(targets))
                fields[j] = str(rng.choice(BAD_TOKENS[types[header[j]]]))
            lines[i] = _render(fields)
    elif kind == 'encoding':
        for _ in range(times):
            i = 0 if rng.random() < 0.05 else data_line()
            cuts = [0] + [m.end() for m in re.finditer(rb',', lines[i])]
            at = int(rng.choice(cuts))
            lines[i] = lines[i][:at] + BAD_BYTES[int(rng.integers(len(BAD_BYTES)))] + lines[i][at:]
    data = term.join(lines) + term
    if kind == 'truncate':  # cut inside the last line (or its line end), at least one byte
        data = data[:len(data) - int(rng.integers(1, len(lines[-1]) + len(term) + 1))]
    return data


def _base(rng: np.random.Generator, schema=SCHEMA) -> list[bytes]:
    n = int(rng.integers(1, 120))
    return [_render([c for c, _ in schema])] + \
        [_render([_cell(rng, t) for _, t in schema]) for _ in range(n)]


# ------------------------------------------------------------------ the reference reading


def _reference(data: bytes, types: dict[str, str]) -> tuple[str, object]:
    """('error', line or None) or ('ok', {column: values}) for what the file holds."""
    if data.startswith(b'\xef\xbb\xbf'):
        data = data[3:]
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as e:
        return 'error', data.count(b'\n', 0, e.start) + 1
    if not text.strip():
        return 'error', None
    if text.count('"') % 2:  # only a cut can open a quote: the last line
        return 'error', text.count('\n') + 1
    reader = csv.reader(io.StringIO(text, newline=''))
    records, line = [], 0
    for rec in reader:
        if rec:
            records.append((line + 1, rec))
        line = reader.line_num
    header = records[0][1]
    if any(c not in header for c in types):
        return 'error', None  # e.g. the header line deleted
    n = len(header)
    pos = {c: header.index(c) for c in types}
    values = {c: [] for c in types}
    problems = []
    for line, rec in records[1:]:
        if len(rec) != n:
            problems.append(line)
            continue
        for c, t in types.items():
            v = rec[pos[c]]
            try:
                if t == INT:
                    if not re.fullmatch(r'-?\d+', v):
                        raise ValueError(v)
                    values[c].append(int(v))
                elif t in (FLOAT, LABEL):
                    values[c].append(np.nan if v == '' else float(v))
                else:
                    values[c].append(None if v == '' else v)
            except ValueError:
                problems.append(line)
    if problems:
        return 'error', min(problems)
    return 'ok', values


def _equal(got: pd.Series, want: list, kind: str) -> bool:
    if kind in (TEXT,):
        return [None if pd.isna(x) else x for x in got.tolist()] == want
    w = np.asarray(want, dtype=np.float32 if kind == LABEL else np.float64)
    g = got.to_numpy(dtype=w.dtype, na_value=np.nan)
    return g.shape == w.shape and bool(np.all((g == w) | (np.isnan(g) & np.isnan(w))))


def _check(path: Path, data: bytes, types: dict[str, str], read, case: str) -> None:
    """read(path) -> {column: Series}; compares with the reference or checks the DataError."""
    path.write_bytes(data)
    outcome, detail = _reference(data, types)
    try:
        got = read(path)
    except DataError as e:
        msg = str(e)
        assert outcome == 'error', f'{case}: the file holds a legit table, got: {msg}'
        assert path.name in msg, f'{case}: the message does not name the file: {msg}'
        if detail is not None:
            assert re.search(rf'\bline {detail}\b', msg), f'{case}: expected line {detail}: {msg}'
        return
    except Exception as e:  # noqa: BLE001 -- the point: no other exception type
        pytest.fail(f'{case}: {type(e).__name__} instead of a DataError: {e}')
    if outcome == 'error' and got is None:
        return
    assert outcome == 'ok', f'{case}: read without error, expected one (line {detail})'
    for c, want in detail.items():
        assert _equal(got[c], want, types[c]), \
            f'{case}: column {c!r} differs from the file: {got[c].tolist()[:8]} vs {want[:8]}'


# ------------------------------------------------------------------ the fuzz tests


@pytest.mark.parametrize('kind', KINDS)
def test_read_csv_chunks_fuzz(kind, tmp_path, monkeypatch):
    types = {c: t for c, t in SCHEMA if t != SKIP}
    dtypes = {c: DTYPES[t] for c, t in types.items()}
    for seed in range(30):
        rng = np.random.default_rng([KINDS.index(kind), seed])
        term = b'\r\n' if rng.random() < 0.3 else b'\n'
        data = _damage(rng, kind, _base(rng), types, term)
        if rng.random() < 0.1:
            data = b'\xef\xbb\xbf' + data
        # small chunks and scan blocks cross record and chunk boundaries
        chunk_rows = int(rng.choice([3, 17, 1000]))
        monkeypatch.setattr(errors, 'SCAN_BLOCK', int(rng.choice([61, 400, 1 << 20])))

        def read(path):
            parts = [c for _, c in read_csv_chunks(path, list(types), dtypes, chunk_rows)]
            return pd.concat(parts, ignore_index=True) if parts else None
        _check(tmp_path / f'{kind}_{seed}.csv', data, types, read, f'{kind} seed {seed}')


def _log_lines(rng: np.random.Generator, tabs) -> list[bytes]:
    log = make_log(int(rng.integers(1, 60)), 20220501, 20220502, seed=int(rng.integers(1 << 30)),
                   tabs=tabs)
    log['user_id'] %= 40
    log['video_id'] %= 150
    return [s.encode() for s in log.to_csv(index=False).splitlines()]


def test_predict_log_reader_fuzz(tmp_path):
    """kuairand.read_log_file (predict mode) on damaged logs, joined with small feature files."""
    synth = pytest.importorskip('pepnet_jax.data.kuairand_synth')
    d = tmp_path / 'kr'
    d.mkdir()
    synth.make_users(np.random.default_rng(0), 40).to_csv(d / 'user_features_pure.csv', index=False)
    synth.make_videos(np.random.default_rng(1), 150, 20).to_csv(
        d / 'video_features_basic_pure.csv', index=False)
    cfg = kuairand_config(d)
    spec = spec_from_config(cfg)
    types = {'user_id': INT, 'video_id': INT, 'time_ms': INT, 'tab': INT, 'is_click': LABEL,
             'is_like': LABEL}

    def read(path):
        frame, raw = kuairand.read_log_file(path, d, spec)
        return {**{c: pd.Series(raw[c]) for c in ('user_id', 'video_id', 'time_ms', 'tab')},
                'is_click': frame['is_click'], 'is_like': frame['is_like']}
    for seed in range(60):
        rng = np.random.default_rng([99, seed])
        kind = KINDS[seed % len(KINDS)]
        data = _damage(rng, kind, _log_lines(rng, (0, 1, 2, 4)), types, b'\n')
        path = tmp_path / f'log_{seed}.csv'
        outcome, detail = _reference(data, types)
        if outcome == 'ok' and not detail['user_id']:
            path.write_bytes(data)  # no rows: predict mode says so
            with pytest.raises(DataError, match=re.escape(path.name)):
                read(path)
            continue
        _check(path, data, types, read, f'predict log {kind} seed {seed}')


def test_aliccp_reader_fuzz(tmp_path):
    """aliccp.read_file on damaged Ali-CCP files: every column is read and type-checked."""
    cfg = ml_collections.ConfigDict(dict(
        format='aliccp', dir=str(tmp_path), tabs=(1, 2, 3), tasks=('click', 'purchase'),
        group_column='101', features=aliccp_features(), groups=aliccp_groups()))
    spec = spec_from_config(cfg)
    schema = [('click', LABEL), ('purchase', LABEL)] + \
        [(f['column'], FLOAT if f['kind'] == 'dense' else INT) for f in aliccp_features()]
    types = dict(schema)

    def read(path):
        frame = aliccp.read_file(path, spec)
        return frame if len(frame) else None

    for seed in range(40):
        rng = np.random.default_rng([7, seed])
        kind = KINDS[seed % len(KINDS)]
        n = int(rng.integers(1, 40))
        cols = [c for c, _ in schema]
        lines = [_render(cols)]
        for _ in range(n):
            row = {c: (str(int(rng.integers(0, 2))) if t == LABEL else
                       str(int(rng.integers(1, 4))) if c == '301' else
                       str(int(rng.integers(0, 500))) if t == INT else
                       repr(round(float(rng.random()), 4))) for c, t in schema}
            lines.append(_render([row[c] for c in cols]))
        data = _damage(rng, kind, lines, types, b'\n')
        outcome, detail = _reference(data, types)
        if outcome == 'ok' and not detail['click']:  # header only: an empty frame is right
            (tmp_path / 'a.csv').write_bytes(data)
            assert read(tmp_path / 'a.csv') is None
            continue
        _check(tmp_path / f'ali_{seed}.csv', data, types, read, f'aliccp {kind} seed {seed}')
