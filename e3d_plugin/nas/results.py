"""What a search leaves on disk: its checkpoint and its results.

The checkpoint (``search_checkpoint.json``) is JSON, so reading it cannot run
code::

    {"format": "e3d-search-checkpoint", "version": 2,
     "sha256": "<sha256 of the canonical payload>",
     "payload": {"settings": {...}, "finished": false,
                 "state": {"done": ..., "order": ..., "rng": [...],
                           "population": [[score, order, blocks, cost], ...],
                           "best": [...], "curve": [[done, best, median], ...],
                           "elapsed_s": ...}}}

Floats are written as Python's shortest round-tripping repr, so a resumed
search continues from exactly the saved numbers. The checksum is taken over
the payload dumped canonically (sorted keys, no spaces): a damaged or edited
file is refused with one line instead of being resumed. Files are written to
a temporary file and renamed, so a kill never leaves half a checkpoint;
temporaries of killed runs are removed on the next run.

:func:`write_results` writes what ``tools/search.py`` gives: the best
structure, the top-k, the summary, the curve and a ready-to-train mmaction2
config.
"""
import hashlib
import json
import os
import os.path as osp
import random

from ..cost import COST_FIELDS
from ..fileio import TEMPORARY_SUFFIX, atomic_write
from ..structure import Structure, StructureError, save_structure
from .state import Candidate, CurvePoint, SearchError, SearchState

CHECKPOINT_NAME = 'search_checkpoint.json'
#: The pickle checkpoint of earlier versions: never read (it could run code).
LEGACY_CHECKPOINT_NAME = 'search_checkpoint.pkl'
FORMAT = 'e3d-search-checkpoint'
VERSION = 2
#: A search checkpoint is far smaller (256 members: about 200 kB).
MAX_CHECKPOINT_BYTES = 256 * 1024 * 1024
#: The memory fields of a candidate's cost; checkpoints of earlier versions
#: lack them (the searcher computes them on resume).
_MEMORY_FIELDS = ('max_feature', 'activation_bytes')
#: Every field a candidate's cost may hold.
_COST_FIELDS = COST_FIELDS + ('latency', )


class _Damaged(ValueError):
    pass


def checkpoint_path(work_dir):
    """The checkpoint file of a search in ``work_dir``."""
    return osp.join(work_dir, CHECKPOINT_NAME)


def _canonical(payload):
    return json.dumps(payload, sort_keys=True, separators=(',', ':'),
                      allow_nan=False)


def _candidate_json(candidate):
    return [candidate.score, candidate.order,
            candidate.structure.to_dicts(), dict(candidate.cost)]


def state_json(state, elapsed_s):
    """``state`` as JSON-ready data."""
    version, internal, gauss = state.rng.getstate()
    return dict(done=state.done, order=state.order,
                rng=[version, list(internal), gauss],
                population=[_candidate_json(c) for c in state.population],
                best=_candidate_json(state.best),
                curve=[list(point) for point in state.curve],
                elapsed_s=elapsed_s)


def write_checkpoint(work_dir, settings, state, elapsed_s, finished=False):
    """Write the checkpoint of ``state`` atomically into ``work_dir``."""
    os.makedirs(work_dir, exist_ok=True)
    payload = dict(settings=settings, finished=bool(finished),
                   state=state_json(state, elapsed_s))
    body = _canonical(payload)
    digest = hashlib.sha256(body.encode()).hexdigest()
    text = (f'{{"format":"{FORMAT}","version":{VERSION},'
            f'"sha256":"{digest}","payload":{body}}}\n')
    path = checkpoint_path(work_dir)
    atomic_write(path, lambda f: f.write(text), sync=True)


def _int(value, what, low=0):
    if type(value) is not int or value < low:
        raise _Damaged(f'{what} is not an integer >= {low}')
    return value


def _number(value, what):
    if type(value) not in (int, float):
        raise _Damaged(f'{what} is not a number')
    return value


def _candidate(data, what):
    if not isinstance(data, list) or len(data) != 4:
        raise _Damaged(f'{what} is not [score, order, blocks, cost]')
    score, order, blocks, cost = data
    if not isinstance(cost, dict) or set(cost) - set(_COST_FIELDS):
        raise _Damaged(f'{what}: the cost is not a cost dict')
    for key in ('flops', 'params', 'layers'):
        _int(cost.get(key), f'{what}: cost {key}')
    for key in _MEMORY_FIELDS:  # absent from checkpoints of older versions
        if key in cost:
            _int(cost[key], f'{what}: cost {key}')
    if 'latency' in cost:
        _number(cost['latency'], f'{what}: cost latency')
    try:
        structure = Structure.from_dicts(blocks)
    except StructureError as e:
        raise _Damaged(f'{what}: {e}') from None
    return Candidate(_number(score, f'{what}: score'),
                     _int(order, f'{what}: order'), structure, cost)


def _state(data):
    if not isinstance(data, dict):
        raise _Damaged('no state')
    population = data['population']
    if not isinstance(population, list) or not population:
        raise _Damaged('the population is empty')
    members = [_candidate(c, f'member {i}')
               for i, c in enumerate(population)]
    curve = data['curve']
    if not isinstance(curve, list) or not all(
            isinstance(p, list) and len(p) == 3 for p in curve):
        raise _Damaged('the curve is not a list of [done, best, median]')
    rng_state = data['rng']
    if not (isinstance(rng_state, list) and len(rng_state) == 3
            and isinstance(rng_state[1], list) and len(rng_state[1]) == 625
            and all(type(v) is int for v in rng_state[1])):
        raise _Damaged('the random generator state is malformed')
    rng = random.Random()
    rng.setstate((rng_state[0], tuple(rng_state[1]), rng_state[2]))
    return SearchState(
        done=_int(data['done'], 'done'),
        order=_int(data['order'], 'order', 1),
        population=members,
        best=_candidate(data['best'], 'the best'),
        curve=[CurvePoint(_int(d, 'a curve point'), _number(b, 'curve'),
                          _number(m, 'curve')) for d, b, m in curve],
        rng=rng,
        elapsed_s=float(_number(data['elapsed_s'], 'elapsed_s')))


def load_payload(path):
    """The checked payload of the checkpoint at ``path``; raises
    ``ValueError`` (one line: what is wrong) for a damaged or edited file."""
    size = osp.getsize(path)
    if size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f'{size} bytes, more than a search checkpoint has')
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f'not JSON text ({type(e).__name__})') from None
    except json.JSONDecodeError as e:
        raise ValueError(f'not JSON: {e}') from None
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    if data.get('version') != VERSION:
        raise ValueError(f"version {data.get('version')!r}, not {VERSION}")
    payload = data.get('payload')
    try:
        body = _canonical(payload)
    except (TypeError, ValueError, RecursionError) as e:
        raise ValueError(f'payload not canonical JSON ({e})') from None
    if hashlib.sha256(body.encode()).hexdigest() != data.get('sha256'):
        raise ValueError('checksum mismatch: the file was damaged or edited')
    if not isinstance(payload, dict) or not isinstance(
            payload.get('settings'), dict):
        raise ValueError('no settings')
    return payload


def read_checkpoint(work_dir):
    """``(settings, SearchState)`` of the checkpoint in ``work_dir``;
    :class:`SearchError` (one line) when it is missing or damaged."""
    path = checkpoint_path(work_dir) if work_dir else None
    if path is None or not osp.isfile(path):
        legacy = work_dir and osp.isfile(osp.join(work_dir,
                                                  LEGACY_CHECKPOINT_NAME))
        if legacy:
            raise SearchError(
                f'--resume: {work_dir} holds only a checkpoint of an earlier '
                f'version ({LEGACY_CHECKPOINT_NAME}, a pickle, which is not '
                'read: it could run code); run without --resume to start a '
                'new search')
        raise SearchError(
            f'--resume: no checkpoint at {path}; run without --resume to '
            'start a new search')
    try:
        payload = load_payload(path)
        state = _state(payload.get('state'))
    except (ValueError, KeyError, TypeError, IndexError,
            OverflowError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else (
            type(e).__name__)
        if isinstance(e, KeyError):
            reason = f'missing {e}'
        raise SearchError(
            f'--resume: checkpoint {path} is damaged ({reason}); delete it '
            'to start over') from None
    return payload['settings'], state


def check_new_search(work_dir):
    """Refuse (:class:`SearchError`) a new search into ``work_dir`` while
    it holds an unfinished or unreadable checkpoint."""
    path = checkpoint_path(work_dir)
    if not osp.isfile(path):
        return
    try:
        payload = load_payload(path)
    except (ValueError, OSError) as e:
        raise SearchError(
            f'work dir {work_dir} holds a search checkpoint that cannot be '
            f'read ({e}); delete {CHECKPOINT_NAME} to start a new search '
            'there, or choose another work dir') from None
    if not payload.get('finished'):
        state = payload.get('state') or {}
        total = payload['settings'].get('num_candidates')
        raise SearchError(
            f'work dir {work_dir} holds an unfinished search '
            f"({state.get('done')}/{total} candidates); continue it with "
            '--resume, or choose another work dir (or delete '
            f'{CHECKPOINT_NAME} to start over)')


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(work_dir):
    """Delete checkpoint temporaries left by killed runs in ``work_dir``."""
    if not osp.isdir(work_dir):
        return
    prefix = CHECKPOINT_NAME + TEMPORARY_SUFFIX
    for name in os.listdir(work_dir):
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            try:
                os.remove(osp.join(work_dir, name))
            except OSError:
                pass


# ----------------------------------------------------------------------
#: How logs and plots name a score type (any other type: its own name).
SCORE_LABELS = {'STEntrScore': 'STEntr-Score'}


def score_label(score):
    """The name of ``score`` (an object or its type name) in logs and
    plots."""
    name = score if isinstance(score, str) else type(score).__name__
    return SCORE_LABELS.get(name, name)


def plot_curve(curve, path, label='STEntr-Score'):
    """Best and median population score (named ``label``) against
    candidates evaluated."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    done = [point[0] for point in curve]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(done, [point[1] for point in curve], label='best')
    ax.plot(done, [point[2] for point in curve], label='population median')
    ax.set_xlabel('candidates evaluated')
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def train_base_backbone(train_base):
    """The backbone ``type`` of the mmaction2 recipe ``train_base``;
    :class:`SearchError` when the file is missing or does not load."""
    from mmengine.config import Config
    if not isinstance(train_base, str) or not osp.isfile(train_base):
        raise SearchError(
            f'train_base: no mmaction2 config at {train_base!r}')
    try:
        cfg = Config.fromfile(train_base)
    except Exception as e:  # mmengine raises many kinds; name the file
        lines = str(e).strip().splitlines()
        raise SearchError(
            f"train_base: cannot load '{train_base}': {type(e).__name__}"
            f"{': ' + lines[-1] if lines else ''}") from None
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    return backbone.get('type')


def write_train_config(path, train_base, structure_file, out_channels):
    """An mmaction2 config training the searched structure.

    Only the structure is replaced (``arch`` / ``structure`` set to None,
    ``structure_file`` set), so the recipe's other backbone settings (e.g.
    ``channels_last``) stay; a recipe whose backbone is not E3D has its
    backbone replaced whole.
    """
    if train_base_backbone(train_base) in ('E3D', 'e3d_plugin.E3D'):
        backbone = ("        type='E3D',\n"
                    '        arch=None,\n'
                    '        structure=None,\n'
                    f'        structure_file={structure_file!r}),\n')
    else:
        backbone = ("        _delete_=True,\n"
                    "        type='E3D',\n"
                    f'        structure_file={structure_file!r}),\n')
    with open(path, 'w') as f:
        f.write(
            '# Generated by the E3D search: the recipe below with the '
            'searched backbone structure.\n'
            f"_base_ = [{train_base!r}]\n\n"
            'model = dict(\n'
            '    backbone=dict(\n'
            f'{backbone}'
            f'    cls_head=dict(in_channels={out_channels}))\n')


def summarize(result, best_path=None, config=None):
    """The JSON-ready summary of a search result."""
    image_size = result['image_size']
    cost = result['best_cost']
    summary = dict(
        config=config,
        best_score=result['best_score'],
        num_evaluated=result['num_evaluated'],
        elapsed_s=round(result['elapsed_s'], 3),
        best_flops=cost['flops'],
        best_params=cost['params'],
        best_layers=cost['layers'],
        best_max_feature=cost.get('max_feature'),
        best_activation_bytes=cost.get('activation_bytes'),
        budgets=result['budgets'],
        seed=result['seed'],
        image_size=list(image_size) if isinstance(image_size,
                                                  (list,
                                                   tuple)) else image_size,
        frames=result['frames'],
        top_k_scores=[e['score'] for e in result['top_k']],
        best_structure=best_path)
    if 'latency' in cost:
        summary['best_latency'] = cost['latency']
        if result.get('latency_table'):
            summary['latency_table'] = result['latency_table']
    return summary


def write_results(result, work_dir, config=None, train_base=None):
    """Write a search result into ``work_dir``; return the summary.

    Files: ``best_structure.json``, ``top_k.json``, ``search_summary.json``,
    ``search_curve.png`` and, with ``train_base`` (an mmaction2 config
    path), ``e3d_searched.py``, a config training the best structure with
    that recipe. ``config`` is recorded in the summary.
    """
    os.makedirs(work_dir, exist_ok=True)
    best = result['best_structure']
    best_path = osp.abspath(osp.join(work_dir, 'best_structure.json'))
    save_structure(best, best_path)
    with open(osp.join(work_dir, 'top_k.json'), 'w') as f:
        json.dump([dict(score=e['score'], cost=e['cost'],
                        structure=e['structure'].to_dicts())
                   for e in result['top_k']], f, indent=2)
    summary = summarize(result, best_path, config)
    with open(osp.join(work_dir, 'search_summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    score_type = ((result.get('settings') or {}).get('score') or {}).get(
        'type', 'STEntrScore')
    plot_curve(result['curve'], osp.join(work_dir, 'search_curve.png'),
               score_label(score_type))
    if train_base:
        write_train_config(osp.join(work_dir, 'e3d_searched.py'), train_base,
                           best_path, best.out_channels)
    return summary


__all__ = ['CHECKPOINT_NAME', 'checkpoint_path', 'write_checkpoint',
           'read_checkpoint', 'load_payload', 'check_new_search',
           'remove_stale_temporaries', 'write_results', 'summarize',
           'plot_curve', 'score_label', 'SCORE_LABELS', 'write_train_config',
           'train_base_backbone']
