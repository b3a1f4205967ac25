"""The append-only JSON-lines file of a rank study's finished runs.

Each run appends one whole line with a single ``os.write`` on an
``O_APPEND`` descriptor, then ``fsync``: a kill leaves every earlier line
intact and at most one half-written last line, which :func:`read_results`
drops (and cuts off the file, so that the next line starts clean).
"""
import json
import math
import os

from ..fileio import atomic_write


def append_result(path, record):
    """Append ``record`` (a JSON-ready dict) to ``path`` as one line."""
    line = (json.dumps(record, sort_keys=True) + '\n').encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):  # a disk-full short write: leave no part
            raise OSError(f'{path}: wrote {written} of {len(line)} bytes')
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut(path, keep):
    """Rewrite ``path`` with its first ``keep`` bytes (tmp + rename)."""
    with open(path, 'rb') as f:
        data = f.read(keep)
    atomic_write(path, lambda f: f.write(data), mode='wb', sync=True)


def _is_record(line):
    """Whether the bytes ``line`` are one whole JSON object."""
    try:
        return isinstance(json.loads(line.decode()), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def read_results(path, repair=True):
    """The records of ``path`` (an empty list when it does not exist) and
    notes on lines that were dropped.

    A last line without its newline that starts a JSON object but does not
    parse is a write a kill interrupted; with ``repair`` it is cut off the
    file. Any other last line without its newline is kept (a whole record
    is read; anything else is skipped with a note), and with ``repair`` the
    file only gains the missing newline, so that nothing is lost and the
    next record starts on a line of its own. A complete line that is not a
    JSON object is skipped with a note.
    """
    notes = []
    if not os.path.exists(path):
        return [], notes
    with open(path, 'rb') as f:
        data = f.read()
    if data and not data.endswith(b'\n'):
        keep = data.rfind(b'\n') + 1
        tail = data[keep:]
        if tail.lstrip().startswith(b'{') and not _is_record(tail):
            notes.append(f'{path}: dropped a half-written last line '
                         f'({len(data) - keep} bytes)')
            data = data[:keep]
            if repair:
                _cut(path, keep)
        else:
            data += b'\n'
            if repair:
                with open(path, 'ab') as f:
                    f.write(b'\n')
    records = []
    for number, line in enumerate(data.decode(errors='replace').split('\n'),
                                  1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError('not an object')
        except ValueError:
            notes.append(f'{path}:{number}: not a JSON record, skipped')
            continue
        records.append(record)
    return records, notes


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(
        value, bool) and math.isfinite(value)


def record_problem(record, fields=('arch', 'seed')):
    """Why ``record`` (a dict of the results file) cannot be used, or None:
    a key field (``fields``) that is not a string or an integer, a status
    that is not a string, or, for a ``done`` record, a ``final`` or
    ``best`` that is not a finite number or a ``curve`` that is not a list
    of finite numbers."""
    for field in fields:
        value = record.get(field)
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            return f'its {field} is {_short(value)}, not a name or a number'
    if not isinstance(record.get('status'), str):
        return f"its status is {_short(record.get('status'))}, not a word"
    if record['status'] != 'done':
        return None
    for field in ('final', 'best'):
        if not _finite(record.get(field)):
            return (f'its {field} is {_short(record.get(field))}, not a '
                    'finite number')
    curve = record.get('curve', [])
    if not isinstance(curve, list) or not all(_finite(v) for v in curve):
        return f'its curve is {_short(curve)}, not a list of finite numbers'
    return None


def _short(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def finished_runs(records, fields=('arch', 'seed')):
    """``{key: record}`` of the runs whose latest record is ``done``; a
    run's key is the tuple of its ``fields`` (``(arch, seed)`` by
    default)."""
    latest = {}
    for record in records:
        key = tuple(record.get(field) for field in fields)
        latest[key] = record
    return {key: record for key, record in latest.items()
            if record.get('status') == 'done'}
