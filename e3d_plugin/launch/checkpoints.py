"""Checking checkpoint files before they are loaded or resumed."""
import os.path as osp
import re

from .config_types import _is_int
from .errors import LaunchError, _short, error_line
from .paths import _as_path


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
