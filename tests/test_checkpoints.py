"""Checkpoints: mmengine's own load with torch's safe reader after
``import e3d_plugin``; crafted files that would run code are refused."""
import os
import os.path as osp
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import (CheckpointLoader, _load_checkpoint,
                                        load_checkpoint)

import e3d_plugin  # noqa: F401  (registers the safe local loader)
from e3d_plugin.checkpoint import TRUST_ENV, UnsafeCheckpointError


class _WritesMarker:
    """Unpickling it would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


class _ReachesGlobals:
    """Unpickling it would reach the module globals of HistoryBuffer.min
    through getattr (a gadget for the allowed ``getattr``)."""

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return (getattr, (HistoryBuffer.min, '__globals__'))


class _Toy(BaseModel):
    """The smallest mmengine model with a loss."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out.squeeze(1) - labels)**2).mean())
        if mode == 'predict':
            return out
        return out



def _toy_dataset():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, generator=gen)
    return [dict(inputs=x[i], labels=x[i].sum()) for i in range(16)]


def _toy_runner(work_dir, epochs, **kwargs):
    return Runner(
        model=_Toy(), work_dir=work_dir,
        train_dataloader=dict(dataset=_toy_dataset(), batch_size=4,
                              sampler=dict(type='DefaultSampler',
                                           shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05)),
        train_cfg=dict(by_epoch=True, max_epochs=epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=1)),
        randomness=dict(seed=0), experiment_name=f'toy{epochs}', **kwargs)


def _crafted(tmp_path, payload):
    path = str(tmp_path / 'crafted.pth')
    torch.save(dict(state_dict={}, meta={}, extra=payload), path)
    return path


def test_local_loader_is_the_safe_one():
    loader = CheckpointLoader._schemes['']
    assert loader.__module__ == 'e3d_plugin.checkpoint'


def test_runner_checkpoint_resumes_with_safe_reader(tmp_path):
    work_dir = str(tmp_path / 'toy')
    first = _toy_runner(work_dir, epochs=2)
    first.train()
    losses = list(first.message_hub.get_scalar('train/loss').data[0])
    path = osp.join(work_dir, 'epoch_1.pth')
    # the file holds the message hub, which plain weights_only refuses
    with zipfile.ZipFile(path) as archive:
        pickled = archive.read([n for n in archive.namelist()
                                if n.endswith('data.pkl')][0])
    assert b'mmengine.logging.history_buffer' in pickled
    assert b'numpy' in pickled
    checkpoint = _load_checkpoint(path)
    buffer = checkpoint['message_hub']['log_scalars']['train/loss']
    assert buffer.mean() == pytest.approx(np.mean(losses[:4]), rel=1e-6)
    assert checkpoint['meta']['epoch'] == 1
    # resume from epoch 1 reproduces the second epoch exactly
    resumed = _toy_runner(str(tmp_path / 'resumed'), epochs=2,
                          resume=True, load_from=path)
    resumed.train()
    assert resumed.epoch == 2
    again = list(resumed.message_hub.get_scalar('train/loss').data[0])
    assert again == pytest.approx(losses, rel=1e-6)
    end = torch.load(osp.join(work_dir, 'epoch_2.pth'), weights_only=True)
    assert torch.equal(resumed.model.linear.weight,
                       end['state_dict']['linear.weight'])


@pytest.mark.parametrize('payload', ['marker', 'getattr'])
def test_crafted_checkpoint_executes_nothing(tmp_path, payload):
    marker = tmp_path / 'MARKER'
    path = _crafted(tmp_path, _WritesMarker(str(marker))
                    if payload == 'marker' else _ReachesGlobals())
    with pytest.raises(UnsafeCheckpointError) as info:
        _load_checkpoint(path)
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith(f"checkpoint '{path}' was not loaded")
    assert f'set {TRUST_ENV}=1' in message
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(nn.Linear(2, 1), path)
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(path)
    runner = _toy_runner(str(tmp_path / 'r'), epochs=1, resume=True,
                         load_from=path)
    with pytest.raises(UnsafeCheckpointError):
        runner.train()
    assert not marker.exists()


class _RunsCommand:
    def __reduce__(self):
        return (os.system, ('true',))


@pytest.mark.parametrize('payload,reason', [
    (_WritesMarker('M'), 'Unsupported global: GLOBAL io.open'),
    (_RunsCommand(), 'Trying to load unsupported GLOBAL posix.system whose '
     'module posix is blocked.'),
])
def test_refusal_names_what_was_refused(tmp_path, payload, reason):
    path = _crafted(tmp_path, payload)
    with pytest.raises(UnsafeCheckpointError) as info:
        _load_checkpoint(path)
    assert str(info.value) == (
        f"checkpoint '{path}' was not loaded: it holds objects outside the "
        f'safe set of weights and mmengine state ({reason}); if you trust '
        'this file, set E3D_TRUST_CHECKPOINTS=1 to load it with full '
        'unpickling, which can run code')


def test_trusted_file_opt_in(tmp_path, monkeypatch):
    marker = tmp_path / 'MARKER'
    path = _crafted(tmp_path, _WritesMarker(str(marker)))
    monkeypatch.setenv(TRUST_ENV, '1')
    checkpoint = _load_checkpoint(path)
    assert checkpoint['state_dict'] == {}
    assert marker.exists()  # the user trusted it: the file did run
    monkeypatch.setenv(TRUST_ENV, '0')
    os.remove(marker)
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.slow
def test_e3d_xs_train_resume_test(tmp_path):
    """The project's own Runner checkpoints (E3D-XS on generated videos)
    load for resume and test."""
    from mmengine.config import Config

    from e3d_plugin.datasets.synthetic_motion import generate
    from tests.helpers import ROOT
    data = generate(str(tmp_path / 'data'), num_videos=20, size=32,
                    frames=16, seed=3)
    options = {}
    for split, ann in (('train', data['train_list']),
                       ('val', data['val_list']), ('test', data['val_list'])):
        prefix = f'{split}_dataloader.'
        options.update({
            prefix + 'dataset.ann_file': ann,
            prefix + 'dataset.data_prefix.video': data['videos'],
            prefix + 'batch_size': 4, prefix + 'num_workers': 0,
            prefix + 'persistent_workers': False})
        for step, key, value in ((1, 'frame_interval', 2),
                                 (3, 'scale', (-1, 32)), (4, 'crop_size',
                                                          32)):
            options[f'{prefix}dataset.pipeline.{step}.{key}'] = value
    config = osp.join(ROOT, 'configs', 'e3d',
                      'e3d_xs_8x4x1_synthetic-motion.py')

    def runner(work_dir, epochs, **extra):
        cfg = Config.fromfile(config)
        cfg.merge_from_dict(dict(options, work_dir=work_dir,
                                 **{'train_cfg.max_epochs': epochs}))
        cfg.update(extra)
        return Runner.from_cfg(cfg)

    first = runner(str(tmp_path / 'a'), 1)
    first.train()
    path = osp.join(str(tmp_path / 'a'), 'epoch_1.pth')
    resumed = runner(str(tmp_path / 'b'), 2, resume=True, load_from=path)
    resumed.train()
    assert resumed.epoch == 2
    assert len(resumed.message_hub.get_scalar('train/loss').data[0]) == 6
    tester = runner(str(tmp_path / 'c'), 1, load_from=osp.join(
        str(tmp_path / 'b'), 'epoch_2.pth'))
    metrics = tester.test()
    assert 0.0 <= metrics['acc/top1'] <= 1.0
    state = resumed.model.state_dict()
    for name, value in tester.model.state_dict().items():
        assert torch.equal(value, state[name]), name
