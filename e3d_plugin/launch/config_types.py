"""Type checks of the settings of a runner's config, before anything is
built from it."""
import math
import os

from .clip import pipeline_clip
from .errors import LaunchError, _short


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
