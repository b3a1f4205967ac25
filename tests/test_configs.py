"""Every E3D config builds its model and pipelines; GFLOPs per recipe."""
import glob
import json
import os.path as osp

import pytest
from mmaction.registry import MODELS, TRANSFORMS
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.helpers import ROOT, load_tool

CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'e3d', '*.py')))


@pytest.fixture(autouse=True)
def _mmaction_scope():
    init_default_scope('mmaction')


def test_all_recipes_present():
    names = {osp.basename(p) for p in CONFIGS}
    for size, clip in (('s', '13x6x1'), ('m', '16x5x1'), ('l', '16x5x1')):
        assert f'e3d_{size}_{clip}_kinetics400-rgb.py' in names
    for size, frames in (('s', 13), ('m', 16), ('l', 16)):
        for version in ('v1', 'v2'):
            assert f'e3d_{size}_u{frames}_sth{version}-rgb.py' in names
    assert 'e3d_xs_8x4x1_synthetic-motion.py' in names


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_builds_model_and_pipelines(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports['imports'] == ['e3d_plugin']
    model = MODELS.build(cfg.model)
    assert model.backbone.feat_dim == cfg.model.cls_head.in_channels
    for split in ('train', 'val', 'test'):
        pipeline = cfg[f'{split}_dataloader'].dataset.pipeline
        steps = [TRANSFORMS.build(step) for step in pipeline]
        assert type(steps[-1]).__name__ == 'PackActionInputs'
        names = [type(s).__name__ for s in steps]
        if 'sth' in path or 'synthetic' in path:
            # flipping would swap direction classes
            assert 'Flip' not in names
        if 'sth' in path:
            assert 'UniformSample' in names
        else:
            assert 'SampleFrames' in names


# config -> (frames, size, GFLOPs to 3 decimals, classes)
EXPECTED = {
    'e3d_s_13x6x1_kinetics400-rgb.py': (13, 160, 1.864, 400),
    'e3d_m_16x5x1_kinetics400-rgb.py': (16, 224, 4.643, 400),
    'e3d_l_16x5x1_kinetics400-rgb.py': (16, 312, 18.340, 400),
    'e3d_s_u13_sthv1-rgb.py': (13, 160, 1.864, 174),
    'e3d_m_u16_sthv1-rgb.py': (16, 224, 4.643, 174),
    'e3d_l_u16_sthv1-rgb.py': (16, 312, 18.340, 174),
    'e3d_s_u13_sthv2-rgb.py': (13, 160, 1.864, 174),
    'e3d_m_u16_sthv2-rgb.py': (16, 224, 4.643, 174),
    'e3d_l_u16_sthv2-rgb.py': (16, 312, 18.340, 174),
    'e3d_xs_8x4x1_synthetic-motion.py': (8, 64, 0.036, 10),
}


def _val_clip(cfg):
    """``(frames, (h, w))`` of a config's validation clip, as mmaction2's
    own transforms make it from 240 x 320 frames."""
    import numpy as np
    results = dict(imgs=[np.zeros((240, 320, 3), np.uint8)] * 2,
                   img_shape=(240, 320), original_shape=(240, 320),
                   modality='RGB', num_clips=1, clip_len=2)
    frames = None
    for step in cfg.val_dataloader.dataset.pipeline:
        if 'clip_len' in step and frames is None:
            frames = step['clip_len']
        if step['type'] in ('Resize', 'CenterCrop', 'ThreeCrop', 'TenCrop',
                            'RandomCrop'):
            results = TRANSFORMS.build(dict(step))(results)
    return frames, tuple(results['img_shape'])


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_analyze_reads_every_config_clip(path, capsys):
    """tools/analyze.py reads each config's clip as mmaction2 makes it."""
    cfg = Config.fromfile(path)
    frames, size = _val_clip(cfg)
    assert load_tool('analyze').main([path, '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    if cfg.model.backbone.get('causal'):
        # the one note of a causal backbone: its activation memory
        assert len(result['notes']) == 1
        assert result['notes'][0].startswith(
            'activation_bytes is that of the non-causal backbone')
    else:
        assert result['notes'] == []
    assert result['frames'] == frames
    assert tuple(result['image_size']) == size
    name = osp.basename(path)
    if name in EXPECTED:
        expected_frames, expected_size, gflops, classes = EXPECTED[name]
        assert cfg.model.cls_head.num_classes == classes
        assert (frames, size) == (expected_frames, (expected_size, ) * 2)
        assert round(result['flops'] / 1e9, 3) == gflops
