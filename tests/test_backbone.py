"""The E3D backbone: arguments, shapes, heads, recognizer from a config."""
import importlib

import pytest
import torch
import torch.nn as nn
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

from e3d_plugin import get_preset
from e3d_plugin.models import E3D, ResidualUnit
from e3d_plugin.models.blocks import build_units
from e3d_plugin.structure import StructureError, save_structure


@pytest.fixture(autouse=True)
def _mmaction_scope():
    init_default_scope('mmaction')


def test_registered_in_mmaction_models():
    model = MODELS.build(dict(type='E3D', arch='E3D-S'))
    assert isinstance(model, E3D)
    assert len(model.blocks) == 7
    assert [len(block) for block in model.blocks] == [1, 3, 6, 6, 6, 6, 1]
    assert model.out_channels == [512] and model.feat_dim == 512
    assert E3D().arch == 'E3D-M'


def test_structure_sources_agree(tmp_path, structure_of):
    blocks = structure_of('dwbtn')
    path = save_structure(blocks, str(tmp_path / 's.json'))
    a = E3D(structure=blocks)
    b = E3D(structure_file=path)
    assert a.structure == b.structure
    assert [k for k, _ in a.state_dict().items()] == [
        k for k, _ in b.state_dict().items()]
    with pytest.raises(StructureError, match='exactly one of'):
        E3D(arch='E3D-S', structure=blocks)


@pytest.mark.parametrize('kind', ['res', 'btn', 'dwbtn'])
def test_output_shapes_and_out_indices(structure_of, kind):
    model = E3D(structure=structure_of(kind), out_indices=(1, 2, -1))
    model.init_weights()
    x = torch.randn(2, 3, 4, 33, 33)
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 4, 9, 9),
                                               (2, 16, 4, 5, 5),
                                               (2, 32, 4, 5, 5)]
    assert model.out_indices == (1, 2, 4)
    assert model.out_channels == [16, 16, 32]
    single = E3D(structure=structure_of(kind), out_indices=(2, ))
    # blocks after the last returned one are not built
    assert len(single.blocks) == 3
    assert tuple(single(x).shape) == (2, 16, 4, 5, 5)


def test_bad_arguments(structure_of):
    with pytest.raises(ValueError, match='out_indices: 5 is out of range'):
        E3D(structure=structure_of('res'), out_indices=(5, ))
    with pytest.raises(ValueError, match='unique'):
        E3D(structure=structure_of('res'), out_indices=(4, -1))
    with pytest.raises(ValueError, match='frozen_stages must be in -1..4'):
        E3D(structure=structure_of('res'), frozen_stages=5)


def test_frozen_stages_and_norm_eval(structure_of):
    model = E3D(structure=structure_of('dwbtn'), frozen_stages=1,
                norm_eval=True)
    model.train()
    frozen = [p.requires_grad for p in model.blocks[:2].parameters()]
    assert frozen and not any(frozen)
    assert all(p.requires_grad for p in model.blocks[2:].parameters())
    assert not model.blocks[0].training and not model.blocks[1].training
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert norms and not any(m.training for m in norms)
    model = E3D(structure=structure_of('dwbtn'), frozen_stages=0).train()
    assert model.blocks[1].training


def test_init_zero_residual_and_activations(structure_of):
    model = E3D(structure=structure_of('btn', se=0.25, act='swish'))
    model.init_weights()
    units = [m for m in model.modules() if isinstance(m, ResidualUnit)]
    with_shortcut = [u for u in units if u.has_shortcut]
    without = [u for u in units if not u.has_shortcut]
    assert len(with_shortcut) == 3 and len(without) == 2
    assert all(float(u.last_norm.weight.abs().sum()) == 0
               for u in with_shortcut)
    assert all(float(u.last_norm.weight.min()) == 1 for u in without)
    assert sum(isinstance(m, nn.SiLU) for m in model.modules()) > 0
    relu_model = E3D(structure=structure_of('btn'))
    assert sum(isinstance(m, nn.SiLU) for m in relu_model.modules()) == 0


def test_with_cp_gives_same_output_and_gradient(structure_of):
    torch.manual_seed(0)
    plain = E3D(structure=structure_of('dwbtn', se=0.25))
    plain.init_weights()
    cp = E3D(structure=structure_of('dwbtn', se=0.25), with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 4, 32, 32)
    for model in (plain, cp):
        model.train()
        model.zero_grad()
        model(x).square().mean().backward()
    assert torch.allclose(plain(x), cp(x), atol=1e-5)
    grads = [(a.grad, b.grad) for a, b in zip(plain.parameters(),
                                               cp.parameters())]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in grads)


def test_pretrained_with_prefix(tmp_path, structure_of):
    source = E3D(structure=structure_of('res'))
    source.init_weights()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.rand_like(p))
    ckpt = {'state_dict': {f'backbone.{k}': v
                           for k, v in source.state_dict().items()}}
    ckpt['state_dict']['cls_head.fc_cls.weight'] = torch.zeros(3, 32)
    path = tmp_path / 'recognizer.pth'
    torch.save(ckpt, path)
    target = E3D(structure=structure_of('res'),
                 init_cfg=dict(type='Pretrained', checkpoint=str(path),
                               prefix='backbone.'))
    target.init_weights()
    for (name, a), b in zip(source.state_dict().items(),
                            target.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize('head', ['I3DHead', 'X3DHead'])
def test_recognizer_from_config_forward_backward(tmp_path, head):
    cfg_file = tmp_path / 'recognizer.py'
    cfg_file.write_text(f"""
_base_ = ['mmaction::_base_/models/x3d.py']
custom_imports = dict(imports=['e3d_plugin'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='E3D', arch='E3D-S'),
    cls_head=dict(_delete_=True, type='{head}', in_channels=512,
                  num_classes=5, average_clips='prob'))
""")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model.backbone.type == 'E3D'
    model = MODELS.build(cfg.model)
    model.init_weights()
    from mmaction.structures import ActionDataSample
    inputs = torch.randint(0, 255, (2, 1, 3, 8, 64, 64)).float()
    samples = [ActionDataSample().set_gt_label(i) for i in (1, 3)]
    data = model.data_preprocessor(
        dict(inputs=list(inputs), data_samples=samples), training=True)
    losses = model(**data, mode='loss')
    loss = losses['loss_cls']
    assert loss.ndim == 0 and float(loss) > 0
    loss.backward()
    grad = model.backbone.blocks[0][0].conv.conv.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(
            dict(inputs=list(inputs), data_samples=samples)), mode='predict')
    assert len(preds) == 2 and preds[0].pred_score.shape == (5, )


def test_stack_imports_cleanly():
    models = importlib.import_module('mmaction.models')
    assert hasattr(models, 'Recognizer3D')
    from mmaction.models.localizers.drn.drn import DRN
    try:
        importlib.import_module('mmaction.models.localizers.drn.drn')
    except ImportError:  # pragma: no cover
        pytest.fail('drn stand-in missing')
    if getattr(DRN, '__module__', '') == 'e3d_plugin._compat':
        with pytest.raises(RuntimeError, match='DRN is not available'):
            DRN()
    import importlib_metadata  # noqa: F401
    from mmengine.utils import get_installed_path, is_installed
    assert is_installed('mmaction2')
    assert get_installed_path('mmaction2').endswith('mmaction')


def test_channels_last_same_result(structure_of):
    torch.manual_seed(0)
    plain = E3D(structure=structure_of('dwbtn'))
    plain.init_weights()
    fast = E3D(structure=structure_of('dwbtn'), channels_last=True)
    fast.load_state_dict(plain.state_dict())
    weight = fast.blocks[1][0].conv2.conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 3, 4, 32, 32)
    plain.eval()
    fast.eval()
    with torch.no_grad():
        assert torch.allclose(plain(x), fast(x), atol=1e-5)


def test_channels_last_only_on_cpu(structure_of):
    """The layout follows the device: channels_last_3d on CPU, contiguous
    on any other (here 'meta', standing in for CUDA), and back."""
    model = E3D(structure=structure_of('dwbtn'), channels_last=True)
    weights = [p for p in model.parameters() if p.dim() == 5]
    assert weights and all(p.is_contiguous(
        memory_format=torch.channels_last_3d) for p in weights)
    model.to('meta')
    weights = [p for p in model.parameters() if p.dim() == 5]
    assert all(p.device.type == 'meta' for p in weights)
    assert all(p.is_contiguous() for p in weights)
    x = torch.empty(1, 3, 4, 16, 16, device='meta')
    assert model._layout_input(x) is x
    model.to_empty(device='cpu')
    assert all(p.is_contiguous(memory_format=torch.channels_last_3d)
               for p in model.parameters() if p.dim() == 5)
    # off: every device keeps what it is given
    plain = E3D(structure=structure_of('dwbtn')).to('meta')
    assert all(p.is_contiguous() for p in plain.parameters())


# argument -> (value, error type, the start of the expected message)
BAD_ARGUMENTS = [
    ('arch', 3, TypeError, 'arch must be a preset name (a str such as '
     '"E3D-S"), got int'),
    ('arch', 'E3D-Q', ValueError, "arch 'E3D-Q' is not a preset; choose one "
     'of E3D-S, E3D-M, E3D-L'),
    ('structure', 'E3D-S', TypeError, 'structure must be a list of block '
     'dicts (see e3d_plugin.structure), got str'),
    ('structure', [1, 2], TypeError, 'structure must be a list of block '
     'dicts (see e3d_plugin.structure), got list holding int'),
    ('structure', {'kind': 'conv'}, TypeError, 'structure must be a list of '
     'block dicts (see e3d_plugin.structure), got dict'),
    ('structure_file', 3, TypeError, 'structure_file must be a path (str) of '
     'a JSON or TinyNAS structure file, got int'),
    ('structure_file', '/no/such/file.json', ValueError,
     "structure_file '/no/such/file.json' does not exist"),
    ('out_indices', '1', TypeError, 'out_indices must be an int or a '
     "list/tuple of ints (block indices, negative from the end), got '1'"),
    ('out_indices', (1.5, ), TypeError, 'out_indices must be an int or a '
     'list/tuple of ints (block indices, negative from the end), got (1.5,)'),
    ('out_indices', (True, ), TypeError, 'out_indices must be an int or a '
     'list/tuple of ints'),
    ('frozen_stages', '1', TypeError, 'frozen_stages must be an int (-1 '
     "freezes nothing), got '1'"),
    ('frozen_stages', 1.0, TypeError, 'frozen_stages must be an int'),
    ('norm_cfg', dict(type='BNX'), ValueError, "norm_cfg: unknown layer type "
     "'BNX'; use a dict with a registered layer type, e.g. "
     "dict(type='BN3d')"),
    ('norm_cfg', 'BN3d', TypeError, 'norm_cfg must be a dict with a '
     "registered layer type, e.g. dict(type='BN3d'); got 'BN3d'"),
    ('norm_cfg', dict(type='BN2d'), ValueError, "norm_cfg={'type': 'BN2d'} "
     'does not build a layer for 3D (NCTHW) features'),
    ('norm_cfg', dict(requires_grad=True), TypeError, 'norm_cfg must be a '
     'dict with a registered layer type'),
    ('conv_cfg', dict(type='ConvX'), ValueError, "conv_cfg: unknown layer "
     "type 'ConvX'; use a dict with a registered layer type, e.g. "
     "dict(type='Conv3d')"),
    ('conv_cfg', dict(type='Conv2d'), ValueError, "conv_cfg={'type': "
     "'Conv2d'} does not build a layer for 3D (NCTHW) features"),
    ('act_cfg', dict(type='Foo'), ValueError, "act_cfg: unknown layer type "
     "'Foo'; use a dict with a registered layer type, e.g. "
     "dict(type='ReLU')"),
    ('act_cfg', 'relu', TypeError, 'act_cfg must be a dict with a registered '
     "layer type, e.g. dict(type='ReLU'); got 'relu'"),
    ('channels_last', 'yes', TypeError,
     "channels_last must be True or False, got 'yes'"),
    ('with_cp', 1, TypeError, 'with_cp must be True or False, got 1'),
    ('norm_eval', 'false', TypeError,
     "norm_eval must be True or False, got 'false'"),
    ('causal', 'True', TypeError, "causal must be True or False, got 'True'"),
    ('depthwise_fp32', 1, TypeError,
     'depthwise_fp32 must be True or False, got 1'),
    ('zero_init_residual', None, TypeError,
     'zero_init_residual must be True or False, got None'),
    ('init_cfg', 'x.pth', TypeError, 'init_cfg must be a dict or a list of '
     'dicts (mmengine init configs), got str'),
]


@pytest.mark.parametrize('name,value,error,message', BAD_ARGUMENTS,
                         ids=[f'{c[0]}-{c[1]!r}' for c in BAD_ARGUMENTS])
def test_constructor_refuses_wrong_types(name, value, error, message):
    with pytest.raises(error) as info:
        MODELS.build(dict(type='E3D', **{name: value}))
    text = str(info.value)
    assert '\n' not in text
    assert text.startswith(message), text


def test_constructor_accepts_the_documented_forms(structure_of):
    model = E3D(structure=tuple(structure_of('res')), out_indices=4,
                frozen_stages=0, act_cfg=None, causal=True,
                norm_cfg=dict(type='GN', num_groups=4),
                conv_cfg=dict(type='Conv3d'), channels_last=False)
    assert model.out_indices == (4, ) and model.causal
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_argument_checks_draw_nothing_from_the_global_generator():
    # the trial layers of the checks must not shift the weights a seed gives
    from e3d_plugin.models.e3d import check_arguments
    torch.manual_seed(0)
    before = torch.get_rng_state()
    check_arguments(arch='E3D-XS')
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(0)
    checked = E3D(arch='E3D-XS')
    torch.manual_seed(0)
    plain = torch.nn.ModuleList(
        build_units(block, dict(type='Conv3d'), dict(type='BN3d'),
                    dict(type='ReLU', inplace=True))
        for block in get_preset('E3D-XS'))
    for a, b in zip(checked.blocks.parameters(), plain.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize('kind', ['res', 'btn', 'dwbtn'])
@pytest.mark.parametrize('size', [(1, 1), (1, 3), (3, 1), (2, 5), (4, 4)])
def test_strided_unit_with_shortcut_takes_one_pixel_sides(kind, size):
    """The shortcut of a strided unit pools 1x2x2 (ceil) like its convs
    stride; a side of one pixel stays one pixel instead of failing."""
    import math

    import torch.nn.functional as F

    from e3d_plugin.models.blocks import ResidualUnit
    unit = ResidualUnit(kind, 8, 8, 3, 3, 2, dict(type='Conv3d'),
                        dict(type='BN3d'), dict(type='ReLU'),
                        bottleneck=0 if kind == 'res' else 16).eval()
    x = torch.randn(2, 8, 3, *size)
    with torch.no_grad():
        out = unit(x)
        shortcut = unit.downsample(x)
    height, width = size
    assert out.shape == (2, 8, 3, math.ceil(height / 2), math.ceil(width / 2))
    if height >= 2 and width >= 2:  # as before: AvgPool3d, ceil_mode
        expected = F.avg_pool3d(x, (1, 2, 2), (1, 2, 2), ceil_mode=True)
    elif size == (1, 1):
        expected = x
    elif size == (1, 3):  # pairs along W; the last, lone pixel as it is
        expected = torch.stack([x[..., 0:2].mean(-1), x[..., 2]], -1)
    else:  # (3, 1)
        expected = torch.stack([x[..., 0:2, :].mean(-2), x[..., 2, :]], -2)
    assert torch.allclose(shortcut, expected, atol=1e-6)
