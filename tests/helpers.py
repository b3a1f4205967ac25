"""Helpers shared by the tests (tests never import each other)."""
import hashlib
import importlib.util
import os
import os.path as osp

import pytest


#: The repository root, found from this file (never a machine path).
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: The published E3D structures shipped with the package.
REFERENCE_DIR = osp.join(ROOT, 'e3d_plugin', 'presets')


def load_tool(name):
    """The module of ``tools/<name>.py`` (or a path), loaded from its file."""
    path = name if osp.isabs(name) else osp.join(ROOT, 'tools', name + '.py')
    spec = importlib.util.spec_from_file_location(
        'tool_' + osp.splitext(osp.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_search_tool():
    """``tools/search.py`` as a module."""
    return load_tool('search')


def analyze_main():
    """``main`` of ``tools/analyze.py``."""
    return load_tool('analyze').main


class Killed(Exception):
    """Stands for the search process being killed."""


def run_capturing_population(search, monkeypatch=None):
    """Run ``search``; return its result and its final population (the
    :class:`~e3d_plugin.nas.evolution.Candidate` records ``(score, order,
    structure, cost)``, best first). ``monkeypatch`` is not needed any more
    (the result holds the population); it is accepted for old callers."""
    result = search.run()
    return result, list(result['population'])


def kill_after_first_checkpoint(search, monkeypatch):
    """Run ``search`` until it has written its first checkpoint, then raise
    :class:`Killed` as a kill would stop it; return the candidates done at
    that checkpoint."""
    original = search.checkpoint
    calls = []

    def checkpoint_then_die(state, elapsed_s):
        original(state, elapsed_s)
        calls.append(state.done)
        raise Killed()

    monkeypatch.setattr(search, 'checkpoint', checkpoint_then_die)
    with pytest.raises(Killed):
        search.run()
    return calls


def checksums(root):
    """``{relative path: sha256}`` of every file under ``root`` (folders
    as ``'dir'``, links as their target)."""
    sums = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            sums[osp.relpath(osp.join(folder, name), root) + '/'] = 'dir'
        for name in files:
            path = osp.join(folder, name)
            key = osp.relpath(path, root)
            if osp.islink(path):
                sums[key] = 'link ' + os.readlink(path)
            else:
                with open(path, 'rb') as f:
                    sums[key] = hashlib.sha256(f.read()).hexdigest()
    return sums


def data_options(data, work_dir, epochs=1, batch=10):
    """--cfg-options pointing the XS config at a small generated set."""
    options = {}
    for split, ann in (('train', data['train_list']), ('val',
                                                       data['val_list']),
                       ('test', data['val_list'])):
        prefix = f'{split}_dataloader.'
        options.update({
            prefix + 'dataset.ann_file': ann,
            prefix + 'dataset.data_prefix.video': data['videos'],
            prefix + 'batch_size': batch,
            prefix + 'num_workers': 0,
            prefix + 'persistent_workers': False,
        })
        for step, key, value in ((1, 'frame_interval', 2), (3, 'scale',
                                                            (-1, 32)),
                                 (4, 'crop_size', 32)):
            options[f'{prefix}dataset.pipeline.{step}.{key}'] = value
    options['train_cfg.max_epochs'] = epochs
    options['work_dir'] = work_dir
    options['default_hooks.logger.interval'] = 1
    return options


def stand_in_train_config(root, base):
    """``root/train.py``: the training config ``base`` pointed at data
    that exists but is empty (``root/data``: empty annotation lists and a
    video folder), for tools that check paths but never really train."""
    import textwrap
    data = root / 'data'
    (data / 'videos').mkdir(parents=True)
    for name in ('train_list.txt', 'val_list.txt'):
        (data / name).write_text('')
    train = root / 'train.py'
    train.write_text(textwrap.dedent(f'''
        _base_ = [{base!r}]
        data_root = {str(data)!r}
        train_dataloader = dict(dataset=dict(
            ann_file=data_root + '/train_list.txt',
            data_prefix=dict(video=data_root + '/videos')))
        val_dataloader = dict(dataset=dict(
            ann_file=data_root + '/val_list.txt',
            data_prefix=dict(video=data_root + '/videos')))
        test_dataloader = val_dataloader
        '''))
    return str(train)


def random_weights(model, seed=0):
    """``model`` in eval mode with weights and norm statistics drawn at
    random (outputs of order 1, residual branches carrying signal), so
    that equalities are not met by near-zero tensors."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith('running_var'):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) +
                             0.5)
            elif name.endswith(('running_mean', 'bias')):
                tensor.copy_(
                    torch.randn(tensor.shape, generator=generator) * 0.1)
            elif tensor.dim() > 1:
                fan_in = tensor[0].numel()
                tensor.copy_(
                    torch.randn(tensor.shape, generator=generator) /
                    fan_in**0.5)
            else:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) +
                             0.5)
    model.eval()  # a statement: mmaction2's X3D.train returns None
    return model


def stream_in_chunks(model, x, chunk):
    """Feed ``x`` (N, C, T, H, W) to ``model.stream_step`` ``chunk``
    frames at a time from a fresh state: the outputs and the last state."""
    import torch
    state = model.init_stream(x.shape[0])
    outs = []
    with torch.no_grad():
        for start in range(0, x.shape[2], chunk):
            out, state = model.stream_step(x[:, :, start:start + chunk],
                                           state)
            outs.append(out)
    return outs, state
