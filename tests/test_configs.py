"""Every E3D config builds its model and pipelines; GFLOPs per recipe."""
import glob
import importlib.util
import json
import os.path as osp

import pytest
from mmaction.registry import MODELS, TRANSFORMS
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.helpers import ROOT

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


def load_tool(name):
    """Import ``tools/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(
        f'tool_{name}', osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_analyze_reads_recipe_clip(name, capsys):
    frames, size, gflops, classes = EXPECTED[name]
    path = osp.join(ROOT, 'configs', 'e3d', name)
    cfg = Config.fromfile(path)
    assert cfg.model.cls_head.num_classes == classes
    assert load_tool('analyze').main([path, '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['frames'] == frames
    assert result['image_size'] == [size, size]
    assert round(result['flops'] / 1e9, 3) == gflops
