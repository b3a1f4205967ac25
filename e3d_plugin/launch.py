"""What the tools share: loading a config with clear errors, checking the
config's types and the data it names, building the mmengine ``Runner``
with a user's mistakes reported on one line, checking checkpoints before
they are used, and setting up distributed runs on machines without CUDA
(gloo instead of NCCL).

Every mistake a user can make in a config, an option or a path ends as a
:class:`LaunchError` whose message is one line naming the field and the fix;
the tools print it as ``error: ...`` and exit with code 2. Errors of the
training itself (after the build) are not caught: they keep their traceback.
"""
import argparse
import math
import os
import os.path as osp
import re
import sys


class LaunchError(RuntimeError):
    """A config, a path or an option a user gave is not usable."""


def _short(value, limit=60):
    """``repr(value)`` cut to about ``limit`` characters, for messages."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit - 5])[:-1] + "...'"
    try:
        text = repr(value)
    except Exception:  # a value's own repr may fail; name its type instead
        return f'<{type(value).__name__}>'
    return text if len(text) <= limit else text[:limit - 3] + '...'


def error_line(e):
    """The message of exception ``e`` on one line (a ``KeyError``'s without
    the quotes ``str`` adds)."""
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(
            e.args[0], str):
        text = e.args[0]
    else:
        text = str(e)
    text = ' '.join(text.split())
    return text or type(e).__name__


# ---------------------------------------------------------------- options
_KEY_PART = re.compile(r'^[^\s=.]+$')


def check_option_key(key):
    """Raise :class:`LaunchError` unless ``key`` is a dotted config key
    (``a.b.0.c``: no empty part, no blank)."""
    if not isinstance(key, str) or not key:
        raise LaunchError(
            f'--cfg-options: empty key in {_short(key)}=...; write '
            'KEY=VALUE, e.g. train_cfg.max_epochs=5')
    if not all(_KEY_PART.match(part) for part in key.split('.')):
        raise LaunchError(
            f"--cfg-options: '{key}' is not a config key (dotted names "
            'without empty parts or blanks, e.g. model.backbone.arch)')


#: How deep ``--cfg-options`` values may nest brackets (``[[1, 2]]`` is 2).
MAX_OPTION_DEPTH = 32
_CLOSING = {'(': ')', '[': ']'}


def _check_brackets(text):
    """Raise ``ValueError`` unless the brackets of ``text`` pair up and
    nest at most :data:`MAX_OPTION_DEPTH` levels."""
    stack = []
    for char in text:
        if char in _CLOSING:
            stack.append(_CLOSING[char])
            if len(stack) > MAX_OPTION_DEPTH:
                raise ValueError(
                    f'brackets nest deeper than {MAX_OPTION_DEPTH} levels')
        elif char in ')]':
            if not stack or stack.pop() != char:
                raise ValueError(f"unbalanced '{char}'")
    if stack:
        raise ValueError(f"'{stack[-1]}' is missing")


def _encloses(text, opening):
    """Whether ``text`` starts with ``opening`` and its match is the
    last character (``(1),(2)`` is not enclosed, ``((1),(2))`` is)."""
    if not text.startswith(opening):
        return False
    depth = 0
    for index, char in enumerate(text):
        depth += char in '(['
        depth -= char in ')]'
        if depth == 0:
            return index == len(text) - 1
    return False


def _next_comma(text):
    depth = 0
    for index, char in enumerate(text):
        depth += char in '(['
        depth -= char in ')]'
        if char == ',' and depth == 0:
            return index
    return len(text)


def _parse_value(text):
    """A ``--cfg-options`` value read as mmengine's ``DictAction`` reads a
    valid one (quotes stripped, blanks removed; ``a,b`` and ``[a,b]`` are
    lists, ``(a,b)`` tuples; numbers, ``true`` / ``false`` and ``None``
    converted), without its endless recursion on ``f(a,b)``-like text:
    that stays a string."""
    from mmengine.config import DictAction
    text = text.strip('\'"').replace(' ', '')
    is_tuple = _encloses(text, '(')
    if is_tuple or _encloses(text, '['):
        text = text[1:-1]
    elif _next_comma(text) == len(text):
        return DictAction._parse_int_float_bool(text)
    values = []
    while text:
        end = _next_comma(text)
        values.append(_parse_value(text[:end]))
        text = text[end + 1:]
    return tuple(values) if is_tuple else values


def parse_cfg_option(text):
    """``(key, value)`` of one ``--cfg-options`` item ``KEY=VALUE``; the
    value is read as mmengine's ``DictAction`` reads it (numbers,
    ``true`` / ``false``, ``None``, lists ``a,b`` / ``[a,b]``, tuples
    ``(a,b)``)."""
    if '=' not in text:
        raise LaunchError(
            f"--cfg-options: '{text}' is not KEY=VALUE (e.g. "
            'train_cfg.max_epochs=5)')
    key, value = text.split('=', 1)
    check_option_key(key)
    try:
        _check_brackets(value)
    except ValueError as e:
        raise LaunchError(
            f'--cfg-options {key}: cannot read the value {_short(value)} '
            f'({e})') from None
    if value.replace(' ', '').startswith('dict('):
        raise LaunchError(
            f'--cfg-options {key}: a dict(...) value is not read; set its '
            f'keys one by one, e.g. {key}.type=...')
    return key, _parse_value(value)


class CfgOptionsAction(argparse.Action):
    """``--cfg-options KEY=VALUE ...`` as a dict, like mmengine's
    ``DictAction``, but a malformed item is a one-line usage error."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest, None) or {})
        for text in values or ():
            try:
                key, value = parse_cfg_option(text)
            except LaunchError as e:
                parser.error(str(e))
            options[key] = value
        setattr(namespace, self.dest, options)


def _check_options(cfg, options):
    """Refuse options that ``merge_from_dict`` would reject with a raw
    error or silently misplace (a key under a plain value, a list index
    that does not exist, one option inside another)."""
    keys = list(options)
    for key in keys:
        check_option_key(key)
    for key in keys:
        for other in keys:
            if other != key and other.startswith(key + '.'):
                raise LaunchError(
                    f'--cfg-options: {key} and {other} both given; set '
                    f'{key} as a whole or only {other}')
    root = getattr(cfg, '_cfg_dict', cfg)  # a Config wraps a ConfigDict
    for key in keys:
        node, walked = root, []
        parts = key.split('.')
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if isinstance(node, dict):
                if part not in node:
                    break  # new keys are created by the merge
                node = node[part]
            elif isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise LaunchError(
                        f"--cfg-options {key}: {'.'.join(walked)} is a list "
                        f'of {len(node)}; index it with 0..{len(node) - 1}')
                node = node[int(part)]
                if last and not isinstance(options[key], dict) and \
                        isinstance(node, dict):
                    raise LaunchError(
                        f'--cfg-options {key}: an item of the list '
                        f"{'.'.join(walked)} can only be changed key by key "
                        f'(e.g. {key}.type=...), got {_short(options[key])}')
            else:
                raise LaunchError(
                    f"--cfg-options {key}: {'.'.join(walked)} is "
                    f'{_short(node)} ({type(node).__name__}), not a dict; '
                    f"set {'.'.join(walked)} itself")
            walked.append(part)


# ----------------------------------------------------------- config types
_DICT = (dict, )
_DICT_OR_NONE = (dict, type(None))
_LIST = (list, tuple)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _expect(where, value, types, what):
    if not isinstance(value, types):
        raise LaunchError(
            f'{where} must be {what}, got {_short(value)} '
            f'({type(value).__name__})')


def _check_typed(where, cfg):
    """Raise unless ``cfg`` (a dict with a ``type``) names its type."""
    _expect(where, cfg, _DICT, "a dict with a 'type'")
    kind = cfg.get('type')
    if kind is not None and not isinstance(kind, str) and not callable(kind):
        raise LaunchError(
            f'{where}.type must be a registered name (a str), got '
            f'{_short(kind)}')


def _check_dataset_types(where, dataset):
    _expect(where, dataset, _DICT, 'a dict (the dataset config)')
    if dataset.get('dataset') is not None:  # RepeatDataset and friends
        _check_dataset_types(f'{where}.dataset', dataset['dataset'])
    if dataset.get('datasets') is not None:  # ConcatDataset
        _expect(f'{where}.datasets', dataset['datasets'], _LIST,
                'a list of dataset configs')
        for i, item in enumerate(dataset['datasets']):
            _check_dataset_types(f'{where}.datasets.{i}', item)
    for key in ('ann_file', 'data_root'):
        value = dataset.get(key)
        if value is not None:
            _expect(f'{where}.{key}', value, (str, os.PathLike), 'a path')
    prefix = dataset.get('data_prefix')
    if prefix is not None:
        _expect(f'{where}.data_prefix', prefix, _DICT,
                "a dict such as dict(video='data/videos')")
        for key, value in prefix.items():
            if value is not None:
                _expect(f'{where}.data_prefix.{key}', value,
                        (str, os.PathLike), 'a path')
    pipeline = dataset.get('pipeline')
    if pipeline is not None:
        _expect(f'{where}.pipeline', pipeline, _LIST,
                'a list of transform dicts')
        for i, step in enumerate(pipeline):
            if callable(step):
                continue  # a transform object is allowed by mmengine
            _check_typed(f'{where}.pipeline.{i}', step)
        pipeline_clip(f'{where}.pipeline', pipeline)  # sizes and clip_len


def check_config_types(cfg):
    """Raise :class:`LaunchError` naming the first setting of the runner's
    config with a value of the wrong type (only the settings present are
    checked, so a search config passes too)."""
    def present(key):
        return key in cfg and cfg[key] is not None

    for key in ('work_dir', 'load_from', 'default_scope', 'launcher'):
        if present(key):
            _expect(key, cfg[key], (str, os.PathLike), 'a str')
    if present('resume'):
        _expect('resume', cfg.resume, (bool, ), 'True or False')
    if 'model' in cfg:
        model = cfg.model
        _expect('model', model, _DICT, "a dict with a 'type'")
        for part in ('backbone', 'cls_head', 'neck', 'data_preprocessor'):
            if model.get(part) is not None:
                _check_typed(f'model.{part}', model[part])
        head = model.get('cls_head') or {}
        for key in ('num_classes', 'in_channels'):
            value = head.get(key)
            if value is not None and not (_is_int(value) and value >= 1):
                raise LaunchError(f'model.cls_head.{key} must be an integer '
                                  f'>= 1, got {_short(value)}')
        preprocessor = model.get('data_preprocessor') or {}
        for key in ('mean', 'std'):
            value = preprocessor.get(key)
            if value is not None and not (
                    isinstance(value, _LIST) and value and all(
                        isinstance(v, (int, float))
                        and not isinstance(v, bool) and math.isfinite(v)
                        for v in value)):
                raise LaunchError(
                    f'model.data_preprocessor.{key} must be a list of finite '
                    f'numbers (one per channel), got {_short(value)}')
    for key in ('train_cfg', 'val_cfg', 'test_cfg', 'randomness', 'env_cfg',
                'log_processor', 'visualizer', 'auto_scale_lr',
                'model_wrapper_cfg', 'default_hooks', 'log_level'):
        if present(key):
            if key == 'log_level':
                _expect(key, cfg[key], (str, int), "a level such as 'INFO'")
            else:
                _expect(key, cfg[key], _DICT, 'a dict')
    if present('randomness'):
        seed = cfg.randomness.get('seed')
        if seed is not None and not (_is_int(seed) and 0 <= seed < 2**32):
            raise LaunchError(
                'randomness.seed must be an integer in [0, 2**32) or None, '
                f'got {_short(seed)}')
        for key in ('deterministic', 'diff_rank_seed'):
            if key in cfg.randomness:
                _expect(f'randomness.{key}', cfg.randomness[key], (bool, ),
                        'True or False')
    if present('default_hooks'):
        for name, hook in cfg.default_hooks.items():
            if hook is not None:
                _check_typed(f'default_hooks.{name}', hook)
    if present('custom_hooks'):
        _expect('custom_hooks', cfg.custom_hooks, _LIST,
                'a list of hook dicts')
        for i, hook in enumerate(cfg.custom_hooks):
            _check_typed(f'custom_hooks.{i}', hook)
    for key in ('param_scheduler', 'val_evaluator', 'test_evaluator'):
        if present(key):
            value = cfg[key]
            items = value if isinstance(value, _LIST) else [value]
            for i, item in enumerate(items):
                _check_typed(key if items is not value else f'{key}.{i}',
                             item)
    if present('optim_wrapper'):
        _expect('optim_wrapper', cfg.optim_wrapper, _DICT, 'a dict')
        optimizer = cfg.optim_wrapper.get('optimizer')
        if optimizer is not None:
            _check_typed('optim_wrapper.optimizer', optimizer)
            lr = optimizer.get('lr')
            if lr is not None and not (
                    isinstance(lr, (int, float)) and not isinstance(lr, bool)
                    and math.isfinite(lr) and lr >= 0):
                raise LaunchError(
                    'optim_wrapper.optimizer.lr must be a finite number '
                    f'>= 0, got {_short(lr)}')
    for split in ('train', 'val', 'test'):
        key = f'{split}_dataloader'
        if not present(key):
            continue
        loader = cfg[key]
        _expect(key, loader, _DICT,
                'a dict with dataset, sampler, batch_size (or None)')
        if loader.get('dataset') is not None:
            _check_dataset_types(f'{key}.dataset', loader['dataset'])
        if loader.get('sampler') is not None:
            _check_typed(f'{key}.sampler', loader['sampler'])
        if 'batch_size' in loader and not (
                _is_int(loader['batch_size']) and loader['batch_size'] >= 1):
            raise LaunchError(
                f'{key}.batch_size must be an integer >= 1, got '
                f"{_short(loader['batch_size'])}")
        if 'num_workers' in loader and not (
                _is_int(loader['num_workers'])
                and loader['num_workers'] >= 0):
            raise LaunchError(
                f'{key}.num_workers must be an integer >= 0, got '
                f"{_short(loader['num_workers'])}")
        if 'persistent_workers' in loader:
            _expect(f'{key}.persistent_workers',
                    loader['persistent_workers'], (bool, ), 'True or False')
    if present('train_cfg'):
        for key in ('max_epochs', 'max_iters', 'val_interval', 'val_begin'):
            value = cfg.train_cfg.get(key)
            if value is not None and not (_is_int(value) and value >= 0):
                raise LaunchError(
                    f'train_cfg.{key} must be an integer >= 0, got '
                    f'{_short(value)}')


# ------------------------------------------------------- the clip of a config
def _positive_int(where, value):
    """``value`` if it is an integer >= 1 (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LaunchError(
            f'{where} must be a positive integer, got {value!r}')
    return value


def _crop_pair(where, value):
    """``(height, width)`` of an mmaction2 crop size: an int, or a
    ``(w, h)`` pair as mmaction2 takes it."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        width, height = (_positive_int(where, v) for v in value)
        return height, width
    if isinstance(value, (list, tuple)):
        raise LaunchError(f'{where} must be an int or a (w, h) pair, got '
                         f'{value!r}')
    side = _positive_int(where, value)
    return side, side


def pipeline_clip(where, pipeline):
    """``(frames, size, how)`` a pipeline gives: ``size`` is ``(h, w)``,
    ``how`` is ``'exact'``, a note why it is approximate, or None (the
    pipeline leaves the size to the video)."""
    frames = size = how = None
    for index, step in enumerate(pipeline):
        if not isinstance(step, dict):
            continue  # a transform object: nothing to read
        at = f'{where}.{index}'
        kind = str(step.get('type', '')).split('.')[-1]
        if frames is None and step.get('clip_len') is not None:
            frames = _positive_int(f'{at}.clip_len', step['clip_len'])
        if kind in ('CenterCrop', 'ThreeCrop', 'TenCrop'):
            size, how = _crop_pair(f'{at}.crop_size',
                                   step.get('crop_size')), 'exact'
        elif kind == 'RandomCrop':
            size, how = _crop_pair(f'{at}.size', step.get('size')), 'exact'
        elif kind in ('RandomResizedCrop', 'MultiScaleCrop'):
            size = how = None  # a random crop: a later Resize fixes the size
        elif kind == 'Resize':
            scale = step.get('scale')
            if isinstance(scale, (list, tuple)) and len(scale) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool)
                    for v in scale):
                if not step.get('keep_ratio', True):
                    size, how = _crop_pair(f'{at}.scale', scale), 'exact'
                else:
                    side = max(scale) if -1 in scale else min(scale)
                    side = _positive_int(f'{at}.scale', side)
                    size = (side, side)
                    how = (f'{at} resizes the short side to {side} and keeps '
                           'the aspect ratio, and no crop follows: analyzed '
                           f'as {side}x{side} (the long side depends on the '
                           'video)')
            else:
                size = how = None  # a scale factor: the video decides
    return frames, size, how


def dataset_configs(dataset):
    """The dataset configs a (possibly wrapped) dataset config holds."""
    if not isinstance(dataset, dict):
        return []
    if isinstance(dataset.get('dataset'), dict):  # RepeatDataset & co.
        return dataset_configs(dataset['dataset'])
    if isinstance(dataset.get('datasets'), (list, tuple)):  # ConcatDataset
        return [config for item in dataset['datasets']
                for config in dataset_configs(item)]
    return [dataset]


def config_clip(cfg):
    """``(frames, (h, w), notes)`` of a config's clip, as its validation
    pipeline makes it (else the test one, else the training one).

    ``notes`` maps ``'frames'`` / ``'image_size'`` to why a value is taken
    elsewhere, approximated or a default: a pipeline without a frame sampler
    takes the ``clip_len`` of another split's (else 16 frames); one that
    resizes the short side without cropping is analyzed as a square of that
    side; one that fixes no size at all as 224 x 224.
    """
    found = []  # (split, frames, size, how), in the order val, test, train
    for split in ('val', 'test', 'train'):
        loader = cfg.get(f'{split}_dataloader')
        if not isinstance(loader, dict):
            continue
        for dataset in dataset_configs(loader.get('dataset')):
            pipeline = dataset.get('pipeline')
            if isinstance(pipeline, (list, tuple)):
                found.append((split, *pipeline_clip(
                    f'{split}_dataloader.dataset.pipeline', pipeline)))
                break
    if not found:
        return 16, (224, 224), dict(
            frames='the config has no data pipeline: analyzed 16 frames '
            '(set --frames)',
            image_size='the config has no data pipeline: analyzed 224x224 '
            '(set --image-size)')
    split, frames, size, how = found[0]
    notes = {}
    if frames is None:
        other = next(((s, f) for s, f, _, _ in found[1:] if f is not None),
                     None)
        if other:
            frames = other[1]
            notes['frames'] = (
                f'the {split} pipeline has no frame sampler with clip_len: '
                f'analyzed {frames} frames, the clip_len of the {other[0]} '
                'pipeline')
        else:
            frames = 16
            notes['frames'] = ('no frame sampler with clip_len in the '
                               "config's pipelines: analyzed 16 frames (set "
                               '--frames)')
    if size is None:
        size = (224, 224)
        notes['image_size'] = (
            f'the {split} pipeline neither crops nor resizes to a fixed '
            'size: analyzed 224x224 (set --image-size)')
    elif how != 'exact':
        notes['image_size'] = how
    return frames, size, notes


# ----------------------------------------------------------- load a config
def load_config(path, cfg_options=None):
    """Load an mmengine config and merge ``--cfg-options`` into it.

    Every mistake (a missing file, a directory, a syntax error, a failing
    import, a malformed or misplaced option, a setting of the wrong type)
    raises :class:`LaunchError` with one line.
    """
    from mmengine.config import Config
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise LaunchError(f'the config must be a file path, got '
                          f'{_short(path)}')
    path = os.fspath(path)
    if osp.isdir(path):
        raise LaunchError(
            f"config '{path}' is a directory; give a config file (.py) in "
            'it')
    if not osp.isfile(path):
        raise LaunchError(f"config file '{path}' does not exist")
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as e:
        raise LaunchError(
            f"config '{path}' has a syntax error at line {e.lineno}: "
            f'{e.msg}') from None
    except ImportError as e:
        cause = e.__cause__ if isinstance(e.__cause__, ImportError) else e
        raise LaunchError(
            f"cannot load config '{path}': {error_line(cause)}") from None
    except Exception as e:  # mmengine raises many kinds; name the file
        message = str(e).strip().splitlines()[-1] if str(e).strip() else ''
        raise LaunchError(
            f"cannot load config '{path}': {type(e).__name__}: "
            f'{message}') from None
    return merge_cfg_options(cfg, cfg_options)


def merge_cfg_options(cfg, cfg_options, known_keys_only=False):
    """Merge ``--cfg-options`` into the loaded ``cfg`` and check the types
    of its settings; :class:`LaunchError` with one line for an option that
    cannot land or, with ``known_keys_only``, whose first key the config
    lacks (mmengine would add it silently: most likely a misspelt key)."""
    if cfg_options:
        if not isinstance(cfg_options, dict):
            raise LaunchError(
                '--cfg-options must be KEY=VALUE pairs, got '
                f'{_short(cfg_options)}')
        if known_keys_only:
            unknown = sorted({str(key).split('.')[0] for key in cfg_options}
                             - set(cfg.keys()))
            if unknown:
                raise LaunchError(
                    f"--cfg-options: the config has no key '{unknown[0]}'; "
                    f"its keys are {', '.join(sorted(cfg.keys()))}")
        _check_options(cfg, cfg_options)
        try:
            cfg.merge_from_dict(cfg_options)
        except (TypeError, KeyError, ValueError, AttributeError) as e:
            raise LaunchError(
                f'--cfg-options: cannot merge {_short(cfg_options)}: '
                f'{error_line(e)}') from None
    check_config_types(cfg)
    return cfg


# -------------------------------------------------------------- the data
def _as_path(where, value):
    if not isinstance(value, (str, os.PathLike)):
        raise LaunchError(
            f'{where} must be a path (a str), got {_short(value)} '
            f'({type(value).__name__})')
    return os.fspath(value)


def _dataset_paths(dataset, where='dataset'):
    """(key, path) pairs a dataset config needs on disk."""
    if dataset is None:
        return []
    if not isinstance(dataset, dict):
        raise LaunchError(
            f'{where} must be a dict (the dataset config), got '
            f'{_short(dataset)}')
    if dataset.get('dataset') is not None:  # RepeatDataset and friends
        return [(f'dataset.{k}', p) for k, p in _dataset_paths(
            dataset['dataset'], f'{where}.dataset')]
    if dataset.get('datasets') is not None:  # ConcatDataset
        items = dataset['datasets']
        if not isinstance(items, (list, tuple)):
            raise LaunchError(f'{where}.datasets must be a list of dataset '
                              f'configs, got {_short(items)}')
        return [(f'datasets.{i}.{k}', p) for i, item in enumerate(items)
                for k, p in _dataset_paths(item, f'{where}.datasets.{i}')]
    root = dataset.get('data_root') or ''
    root = _as_path(f'{where}.data_root', root)
    paths = []
    ann_file = dataset.get('ann_file')
    if ann_file:
        ann_file = _as_path(f'{where}.ann_file', ann_file)
        paths.append(('ann_file', ann_file if osp.isabs(ann_file) or not root
                      else osp.join(root, ann_file)))
    prefix = dataset.get('data_prefix') or {}
    if not isinstance(prefix, dict):
        raise LaunchError(
            f"{where}.data_prefix must be a dict such as dict(video="
            f"'data/videos'), got {_short(prefix)}")
    for key, value in prefix.items():
        if value:
            value = _as_path(f'{where}.data_prefix.{key}', value)
            paths.append((f'data_prefix.{key}', value if osp.isabs(value) or
                          not root else osp.join(root, value)))
    return paths


def check_data(cfg, splits=('train', 'val', 'test')):
    """Raise :class:`LaunchError` when a dataset's files are missing (or
    its paths are not paths)."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        if not isinstance(loader, dict):
            raise LaunchError(
                f'{split}_dataloader must be a dict (or None), got '
                f'{_short(loader)}')
        for key, path in _dataset_paths(loader.get('dataset'),
                                        f'{split}_dataloader.dataset'):
            if not osp.exists(path):
                hint = ''
                if 'synthetic_motion' in path:
                    hint = ('; generate it with python '
                            'tools/data/synthetic_motion.py --out '
                            'data/synthetic_motion')
                raise LaunchError(
                    f"{split}_dataloader.dataset.{key}: '{path}' does not "
                    f'exist{hint}')


def prepare_work_dir(path, option='work_dir', fix='choose another work dir'):
    """Create the work dir ``path`` now (so an unusable one is reported
    before anything is built); return it."""
    path = _as_path(option, path)
    if not path:
        raise LaunchError(f'{option} must not be empty')
    if osp.exists(path) and not osp.isdir(path):
        raise LaunchError(
            f"{option} '{path}' is a file, not a directory; {fix}")
    try:
        os.makedirs(path, exist_ok=True)
    except (OSError, ValueError) as e:
        reason = getattr(e, 'strerror', None) or error_line(e)
        raise LaunchError(
            f"{option} '{path}' cannot be created ({reason}); {fix}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise LaunchError(f"{option} '{path}' is not writable; {fix}")
    return path


def prepare_output_file(path, option):
    """Create the folder of output file ``path`` now, so that a result
    computed at the end of a run is not lost to a missing folder."""
    path = _as_path(option, path)
    if osp.isdir(path):
        raise LaunchError(f"{option} '{path}' is a directory; give a file "
                          'name')
    prepare_work_dir(osp.dirname(osp.abspath(path)), f'{option} folder',
                     'choose another file name')
    return path


# ------------------------------------------------------------ build step
#: What a user's config can make a build raise: a wrong value or type, an
#: unknown registry name (KeyError), a named file that is missing.
BUILD_ERRORS = (LaunchError, ValueError, TypeError, KeyError,
                FileNotFoundError)


def _constructors(e):
    """Class names of the objects whose ``__init__`` the traceback of ``e``
    passes through, innermost last."""
    names, tb = [], e.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == '__init__':
            obj = frame.f_locals.get('self')
            if obj is not None:
                names.append(type(obj).__name__)
        tb = tb.tb_next
    return names


def _find_type(node, name, where):
    """Dotted path of the first config dict under ``node`` whose ``type``
    is ``name``."""
    if isinstance(node, dict):
        kind = node.get('type')
        if kind == name or getattr(kind, '__name__', None) == name:
            return where
        children = node.items()
    elif isinstance(node, (list, tuple)):
        children = enumerate(node)
    else:
        return None
    for key, value in children:
        found = _find_type(value, name, f'{where}.{key}')
        if found:
            return found
    return None


_UNREGISTERED = re.compile(r'^(\S+) is not in the (.+?) registry\.')


def _build_error(e, cfg, sections, step):
    """A :class:`LaunchError` for build error ``e``, naming the config
    section of the innermost object that raised it where it can be
    found."""
    message = error_line(e)
    if isinstance(e, LaunchError):
        return LaunchError(message)
    names = _constructors(e)
    unregistered = _UNREGISTERED.match(message) if isinstance(
        e, KeyError) else None
    if unregistered:
        name, registry = unregistered.groups()
        message = (f"type '{name}' is not registered in {registry}; check "
                   'the spelling, or import the module that registers it '
                   '(custom_imports)')
        names.append(name)  # the dict that names it is the one to fix
    for name in reversed(names):
        for section in sections:
            where = _find_type(cfg.get(section), name, section)
            if where:
                return LaunchError(f'{where}: {message}')
    return LaunchError(f'cannot build {step}: {message}')


_RUNNER_SECTIONS = ('model', 'default_hooks', 'custom_hooks', 'visualizer',
                    'log_processor', 'model_wrapper_cfg', 'optim_wrapper')


_NEEDS = dict(
    train=('model', 'train_dataloader', 'train_cfg', 'optim_wrapper'),
    test=('model', 'test_dataloader', 'test_cfg', 'test_evaluator'))


def build_runner(cfg, mode):
    """Build the mmengine ``Runner`` of ``cfg`` and everything ``mode``
    (``'train'`` or ``'test'``) builds before it runs: the model, hooks,
    the loops with their datasets and evaluators, the optimizer wrapper.

    A mistake a user can cause there (:data:`BUILD_ERRORS`) raises
    :class:`LaunchError` with one line naming the config section; nothing
    has run yet. ``runner.train()`` / ``runner.test()`` then use the built
    parts as they are (mmengine builds a part only once).
    """
    from mmengine.runner import Runner
    if mode not in _NEEDS:
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    missing = [key for key in _NEEDS[mode] if cfg.get(key) is None]
    if missing:
        raise LaunchError(
            f"the config sets no {', '.join(missing)}; to {mode}, a config "
            f"needs {', '.join(_NEEDS[mode])}")
    try:
        runner = Runner.from_cfg(cfg)
    except BUILD_ERRORS as e:
        raise _build_error(e, cfg, _RUNNER_SECTIONS, 'the runner') from None

    def build_optim_wrapper():
        _check_optimizer_types(cfg)
        runner.optim_wrapper = runner.build_optim_wrapper(
            runner.optim_wrapper)

    if mode == 'train':
        steps = [
            ('train_dataloader', ('train_dataloader', 'train_cfg'),
             lambda: runner.train_loop),
            ('optim_wrapper', ('optim_wrapper', ), build_optim_wrapper),
            ('val_dataloader', ('val_dataloader', 'val_evaluator', 'val_cfg'),
             lambda: runner.val_loop),
        ]
    else:
        steps = [('test_dataloader', ('test_dataloader', 'test_evaluator',
                                      'test_cfg'), lambda: runner.test_loop)]
    _check_head_width(runner.model)
    # The same order as Runner.train() / Runner.test() build them in.
    for step, sections, build in steps:
        try:
            build()
        except BUILD_ERRORS as e:
            raise _build_error(e, cfg, sections, step) from None
    return runner


def _check_head_width(model):
    """Refuse a classification head whose input width is not the width the
    E3D backbone gives (a searched structure changes it): PyTorch would
    fail at the first step with a shape error."""
    from mmengine.model import is_model_wrapper
    if is_model_wrapper(model):
        model = model.module
    backbone = getattr(model, 'backbone', None)
    head = getattr(model, 'cls_head', None)
    width = getattr(backbone, 'feat_dim', None)
    expected = getattr(head, 'in_channels', None)
    if (getattr(model, 'neck', None) is None and isinstance(width, int)
            and isinstance(expected, int) and width != expected):
        raise LaunchError(
            f'model.cls_head.in_channels is {expected}, but the '
            f'{type(backbone).__name__} backbone gives {width} channels; set '
            f'model.cls_head.in_channels={width}')


def _check_registered(where, item, registry, examples):
    kind = item.get('type') if isinstance(item, dict) else None
    if isinstance(kind, str) and registry.get(kind) is None:
        raise LaunchError(
            f"{where}.type: '{kind}' is not registered in {registry.name} "
            f'(e.g. {examples})')


def _check_optimizer_types(cfg):
    """Refuse unknown optimizer, optimizer wrapper and parameter-scheduler
    types now: mmengine reports them late (schedulers are built only
    inside ``Runner.train()``, after the learning rate is scaled) or as
    "None is not a callable object"."""
    from mmengine.registry import (OPTIM_WRAPPERS, OPTIMIZERS,
                                   PARAM_SCHEDULERS)
    optim_wrapper = cfg.get('optim_wrapper')
    if isinstance(optim_wrapper, dict) and 'constructor' not in optim_wrapper:
        _check_registered('optim_wrapper', optim_wrapper, OPTIM_WRAPPERS,
                          "'OptimWrapper', 'AmpOptimWrapper'")
        _check_registered('optim_wrapper.optimizer',
                          optim_wrapper.get('optimizer'), OPTIMIZERS,
                          "'SGD', 'AdamW'")
    schedulers = cfg.get('param_scheduler')
    if schedulers is None:
        return
    items = schedulers if isinstance(schedulers, (list, tuple)) else [
        schedulers]
    for i, item in enumerate(items):
        _check_registered(
            'param_scheduler' if items is not schedulers else
            f'param_scheduler.{i}', item, PARAM_SCHEDULERS,
            "'CosineAnnealingLR', 'LinearLR'")


def check_pretrained(cfg):
    """Refuse a local ``init_cfg=dict(type='Pretrained', checkpoint=...)``
    of the model that does not exist (it is read only after the first
    hooks ran)."""
    def walk(node, where):
        if isinstance(node, dict):
            if node.get('type') == 'Pretrained':
                path = node.get('checkpoint')
                if not isinstance(path, (str, os.PathLike)):
                    raise LaunchError(
                        f'{where}.checkpoint must be a path, got '
                        f'{_short(path)}')
                path = os.fspath(path)
                if '://' not in path and not osp.isfile(path):
                    raise LaunchError(
                        f"{where}.checkpoint '{path}' does not exist")
            for key, value in node.items():
                walk(value, f'{where}.{key}')
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f'{where}.{i}')

    walk(cfg.get('model'), 'model')


# ------------------------------------------------------------ checkpoints
def _message_lines(e):
    """The useful part of a (possibly multi-line) load error: its first
    line, and torch's line naming what a safe load refused."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    picked = [lines[0]]
    picked += [line for line in lines[1:]
               if line.startswith('WeightsUnpickler error')][:1]
    return f"{type(e).__name__}: {' '.join(picked)}"


def load_checkpoint_file(path, option):
    """The checkpoint at ``path`` as mmengine loads it (same loader, same
    safety settings); a missing, unreadable or non-checkpoint file raises
    :class:`LaunchError` naming ``option``."""
    from mmengine.runner.checkpoint import CheckpointLoader
    path = _as_path(option, path)
    if '://' not in path:  # a URL is left to mmengine's loaders
        if osp.isdir(path):
            raise LaunchError(
                f"{option} '{path}' is a directory, not a checkpoint file")
        if not osp.isfile(path):
            raise LaunchError(f"{option} '{path}' does not exist")
        if osp.getsize(path) == 0:
            raise LaunchError(f"{option} '{path}' is an empty file")
    try:
        checkpoint = CheckpointLoader.load_checkpoint(path,
                                                      map_location='cpu')
    except Exception as e:  # any byte of a file can fail; name the file
        if type(e).__name__ == 'UnsafeCheckpointError':
            # the safe loader's own line names the file and the opt-in
            raise LaunchError(error_line(e)) from None
        raise LaunchError(
            f"{option} '{path}' cannot be loaded; is it a PyTorch "
            f'checkpoint (.pth)? ({_message_lines(e)})') from None
    if not isinstance(checkpoint, dict):
        raise LaunchError(
            f"{option} '{path}' holds a {type(checkpoint).__name__}, not a "
            'checkpoint (a dict with a state_dict)')
    return checkpoint


def _weights(checkpoint, path, option):
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict):
        raise LaunchError(
            f"{option} '{path}': its state_dict is {_short(state)} "
            f'({type(state).__name__}), not a dict of weights')
    # mmengine strips the prefix of a model saved inside a wrapper
    weights = {re.sub(r'^module\.', '', str(k)): v for k, v in state.items()
               if hasattr(v, 'shape')}
    if not weights:
        raise LaunchError(f"{option} '{path}' holds no weights (no tensors "
                          'in its state_dict)')
    return weights


def check_checkpoint_matches(model, checkpoint, path, option):
    """Raise :class:`LaunchError` unless every weight of ``model`` is in
    ``checkpoint`` with the same shape (mmengine would only warn, and test
    or resume with the model's random weights)."""
    from mmengine.model import is_model_wrapper
    if is_model_wrapper(model):
        model = model.module
    expected = model.state_dict()
    weights = _weights(checkpoint, path, option)
    # BatchNorm counters are not weights; old checkpoints lack them
    missing = [k for k in expected if k not in weights
               and not k.endswith('num_batches_tracked')]
    different = [(k, tuple(weights[k].shape), tuple(expected[k].shape))
                 for k in expected if k in weights
                 and tuple(weights[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f'{len(missing)} of the model\'s {len(expected)} '
                        f'weights are missing (first: {missing[0]})')
    if different:
        key, theirs, ours = different[0]
        problems.append(f'{len(different)} have another shape (first: '
                        f'{key}: {theirs} in the checkpoint, {ours} in the '
                        'model)')
    if problems:
        raise LaunchError(
            f"{option} '{path}' does not match the model of the config: "
            f"{'; '.join(problems)}; use the config it was trained with")


def check_resume(runner, path, option='--resume'):
    """Raise :class:`LaunchError` unless ``path`` can be resumed by
    ``runner`` (built by :func:`build_runner` for training): a training
    checkpoint (meta.epoch, meta.iter, message_hub) of the same model and
    optimizer layout."""
    checkpoint = load_checkpoint_file(path, option)
    meta = checkpoint.get('meta')
    if not isinstance(meta, dict) or not all(
            _is_int(meta.get(k)) for k in ('epoch', 'iter')) or (
                'message_hub' not in checkpoint):
        raise LaunchError(
            f"{option} '{path}' holds no training state (meta.epoch, "
            'meta.iter, message_hub) to resume; to start from its weights, '
            f'use --cfg-options load_from={path} without --resume')
    check_checkpoint_matches(runner.model, checkpoint, path, option)
    saved = checkpoint.get('optimizer')
    optim_wrapper = runner.optim_wrapper
    optimizer = getattr(optim_wrapper, 'optimizer', None)
    if isinstance(saved, dict) and isinstance(saved.get('param_groups'),
                                              list) and optimizer is not None:
        theirs = [len(g.get('params', ())) for g in saved['param_groups']]
        ours = [len(g['params']) for g in optimizer.param_groups]
        if theirs != ours:
            def groups(sizes):
                return (f"{len(sizes)} parameter group"
                        f"{'s' if len(sizes) != 1 else ''} of "
                        f'{sum(sizes)} parameters')
            if len(theirs) != len(ours):
                what = f'{groups(theirs)}, the config\'s {groups(ours)}'
            else:
                index = next(i for i, (a, b) in enumerate(zip(theirs, ours))
                             if a != b)
                what = (f'parameter group {index} of {theirs[index]} '
                        f"parameters, the config's of {ours[index]}")
            raise LaunchError(
                f"{option} '{path}': its optimizer has {what}; resume with "
                'the optimizer settings (paramwise_cfg) it was trained with')


def setup_distributed(cfg, launcher):
    """Prepare a distributed run; on a machine without CUDA use gloo.

    mmengine's ``pytorch`` launcher calls ``torch.cuda.set_device``, which a
    CPU-only torch cannot do, and its DDP wrapper passes ``device_ids``,
    which DDP rejects for CPU modules. Where CUDA is missing, the process
    group is created here with gloo from torchrun's environment (mmengine
    then skips its own set-up), and DDP gets ``device_ids=None``.
    """
    import torch
    import torch.distributed as dist
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise LaunchError(
            f"--launcher {launcher} needs CUDA; on a CPU machine use "
            '--launcher pytorch (tools/dist_train.sh) or none')
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                           'MASTER_PORT') if k not in os.environ]
    if missing:
        raise LaunchError(
            '--launcher pytorch expects torchrun to set '
            f"{', '.join(missing)}; start it with tools/dist_train.sh")
    env_cfg = cfg.get('env_cfg') or {}
    if not isinstance(env_cfg.get('dist_cfg') or {}, dict):
        raise LaunchError('env_cfg.dist_cfg must be a dict, got '
                          f"{_short(env_cfg['dist_cfg'])}")
    env_cfg['dist_cfg'] = dict(env_cfg.get('dist_cfg') or {}, backend='gloo')
    cfg.env_cfg = env_cfg
    if not dist.is_initialized():
        dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    if backbone.get('channels_last'):
        # Seen here: DDP over gloo with channels_last_3d weights aborts a
        # rank now and then ("terminate called without an active
        # exception") after "grad strides do not match bucket view strides".
        backbone['channels_last'] = False
        print('e3d_plugin: channels_last is turned off for DDP on CPU',
              file=sys.stderr)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return True


class VideoDecodeError(RuntimeError):
    """A video file of a dataset cannot be decoded."""


def name_unreadable_videos():
    """Make mmaction2's ``DecordInit`` name the file it cannot decode.

    decord reads the bytes mmaction2 hands it and reports only "Error reading
    N bytes"; the wrapper re-raises as :class:`VideoDecodeError` with the
    path, which the tools print on one line.
    """
    from mmaction.datasets.transforms.loading import DecordInit
    if getattr(DecordInit.transform, 'names_unreadable_videos', False):
        return
    original = DecordInit.transform

    def transform(self, results):
        try:
            return original(self, results)
        except Exception as e:
            raise VideoDecodeError(
                f"cannot decode video '{results.get('filename')}' "
                f'({type(e).__name__}: {e}); check the file or remove it '
                'from the annotation list') from e

    transform.names_unreadable_videos = True
    DecordInit.transform = transform


def run_or_report(step):
    """Run ``step()``; a bad video ends it with one line and exit code 2.

    The process group is destroyed at the end: a gloo group left alive at
    interpreter exit can abort the process ("terminate called without an
    active exception") after the work is done.
    """
    try:
        step()
    except VideoDecodeError as e:
        lines = [line for line in str(e).splitlines() if line.strip()]
        message = lines[-1] if lines else repr(e)
        # A DataLoader worker's copy is prefixed with the class path.
        message = message.split('VideoDecodeError: ', 1)[-1]
        print(f'error: {message}', file=sys.stderr)
        return 2
    finally:
        end_distributed()
    return 0


def end_distributed():
    """Destroy the process group, if one was created."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line (exit code 2)."""

    def error(self, message):
        self.exit(2, f'error: {message} (see --help)\n')
