"""Building the mmengine ``Runner`` and what it builds before it runs, a
user's mistake there reported on one line naming the config section."""
import os
import os.path as osp
import re

from .errors import LaunchError, _short, error_line


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
            ('param_scheduler', ('param_scheduler', ),
             lambda: _try_schedulers(runner, cfg)),
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


def _try_schedulers(runner, cfg):
    """Build the parameter schedulers once against a stand-in optimizer
    (same class and group settings, one dummy parameter), so that a wrong
    argument fails now, not inside ``Runner.train()``; the real optimizer
    is left untouched (a scheduler changes its learning rate when built).
    Several optimizers (an ``OptimWrapperDict``) are left to mmengine."""
    import copy

    import torch
    from mmengine.optim import OptimWrapper, OptimWrapperDict
    schedulers = cfg.get('param_scheduler')
    optim_wrapper = runner.optim_wrapper
    if not schedulers or isinstance(optim_wrapper, OptimWrapperDict) or (
            not isinstance(optim_wrapper, OptimWrapper)):
        return
    optimizer = optim_wrapper.optimizer
    groups = [
        dict({k: copy.deepcopy(v) for k, v in group.items() if k != 'params'},
             params=[torch.zeros(1, requires_grad=True)])
        for group in optimizer.param_groups
    ]
    try:
        stand_in = OptimWrapper(type(optimizer)(groups))
    except Exception:  # an optimizer that cannot be rebuilt this way
        return
    # it copies each scheduler config before filling in defaults
    runner._build_param_scheduler(schedulers, stand_in)


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
