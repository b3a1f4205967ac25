"""The memory-traffic model (e3d_plugin/traffic.py): the structure count
against the hook count of the built backbone, hand-counted values of the
rules, batch scaling and refused arguments."""
import random

import pytest
import torch
import torch.nn as nn

from e3d_plugin.cost import compute_cost
from e3d_plugin.models import E3D
from e3d_plugin.nas import E3DSearchSpace
from e3d_plugin.structure import Structure, get_preset
from e3d_plugin.traffic import (KINDS, Op, module_traffic, op_bytes,
                                structure_ops, structure_traffic, time_floor)

SETTINGS = [(mode, e) for mode in ('train', 'infer') for e in (4, 2)]


def assert_counts_agree(structure, image_size, frames, batch=2, model=None):
    """Structure count == hook count of the built backbone, both modes and
    both element sizes, total and every kind."""
    model = model or E3D(structure=list(structure))
    height, width = (image_size, image_size) if isinstance(
        image_size, int) else image_size
    for mode, e in SETTINGS:
        counted = structure_traffic(structure, image_size, frames, batch, e,
                                    mode)
        hooked = module_traffic(model, (batch, 3, frames, height, width), e,
                                mode)
        assert counted == hooked, (mode, e, structure.describe())
        assert sum(counted.by_kind.values()) == counted.total
        assert counted.total > 0 and counted.ops == hooked.ops
        if mode == 'infer':
            assert counted.backward == counted.update == 0
        else:
            assert counted.backward > counted.forward > 0


# the presets at small, odd clips (XS reaches one-pixel sides)
@pytest.mark.parametrize('name,clip', [
    ('E3D-XS', ((21, 17), 3)), ('E3D-S', (24, 2)), ('E3D-M', ((19, 26), 2)),
    ('E3D-L', (16, 1))])
def test_presets_structure_count_equals_hook_count(name, clip):
    structure = get_preset(name)
    assert_counts_agree(structure, *clip, model=E3D(arch=name))


def random_structures(seed):
    """For every block kind, with and without SE: a strided block that
    widens (no shortcut) then one that keeps the width (a pooled
    shortcut), then a stride-1 block with identity shortcuts; random
    odd kernels, depths, bottlenecks (1 included: a ``dwbtn`` whose
    middle conv is then dense) and activations."""
    rng = random.Random(seed)
    structures = []
    for kind in ('conv', 'res', 'btn', 'dwbtn'):
        for se in (0.0, rng.choice([0.25, 0.0625, 0.5])):
            if kind == 'conv' and se:
                continue
            blocks = [{'kind': 'conv', 'in': 3, 'out': 8, 'k': 3,
                       'kt': rng.choice([1, 3]), 's': rng.choice([1, 2])}]
            for cin, cout, stride in ((8, 12, 2), (12, 12, 2), (12, 12, 1)):
                block = {'kind': kind, 'in': cin, 'out': cout,
                         'k': rng.choice([1, 3, 5]), 'kt': rng.choice([1, 3]),
                         's': stride, 'L': rng.choice([1, 2, 3])}
                if kind in ('btn', 'dwbtn'):
                    block['btn'] = rng.choice([1, 8, 12, 24])
                if se:
                    block['se'] = se
                act = rng.choice([None, 'relu', 'swish'])
                if act:
                    block['act'] = act
                blocks.append(block)
            blocks.append({'kind': 'conv', 'in': 12, 'out': 16, 'k': 1})
            structures.append(Structure.from_dicts(blocks))
    return structures


@pytest.mark.parametrize('seed', [0, 1])
def test_random_structures_of_every_kind_match_the_built_module(seed):
    rng = random.Random(100 + seed)
    for structure in random_structures(seed):
        clip = rng.choice([((29, 23), 3), ((25, 31), 2), (9, 1), (27, 3)])
        assert_counts_agree(structure, *clip, batch=rng.choice([1, 2, 3]))


def test_search_space_samples_match_the_built_module():
    space = E3DSearchSpace(image_size=40, frames=8,
                           kinds=('res', 'btn', 'dwbtn'))
    template = get_preset('E3D-XS')
    rng = random.Random(7)
    for _ in range(3):
        structure = space.mutate(space.sample(template, rng), rng)
        assert_counts_agree(structure, (33, 29), 3, batch=2)


def test_one_conv_unit_by_hand():
    """conv 3->8 3x3 on 1 clip of 2x4x4 (32 positions): conv, BN, ReLU."""
    structure = Structure.from_dicts(
        [{'kind': 'conv', 'in': 3, 'out': 8, 'k': 3}])
    infer = structure_traffic(structure, 4, 2, 1, 4, 'infer')
    # conv: in 96 + out 256 elements, 216 weights; BN: 256 + 256, 16
    # params; ReLU: 256 + 256
    conv, norm, relu = 4 * (96 + 256) + 4 * 216, 4 * 512 + 4 * 16, 4 * 512
    assert infer.total == infer.forward == conv + norm + relu == 6432
    assert infer.by_kind == dict(conv=conv, depthwise=0, norm_act=norm + relu,
                                 other=0, update=0)
    train = structure_traffic(structure, 4, 2, 1, 4, 'train')
    # conv backward: grad out, no grad of the clip, grad W, saved x and W;
    # BN: grad out, grad in, grad params, saved x and params; ReLU: grad
    # out, grad in, its result
    conv_b = 4 * 256 + 4 * 216 + 4 * 96 + 4 * 216
    norm_b = 4 * 512 + 4 * 16 + 4 * 256 + 4 * 16
    relu_b = 4 * 512 + 4 * 256
    assert train.backward == conv_b + norm_b + relu_b == 9408
    assert train.update == 5 * 4 * (216 + 16)
    assert train.total == 6432 + 9408 + 4640
    half = structure_traffic(structure, 4, 2, 1, 2, 'train')
    # activations at 2 bytes, parameters and their gradients at 4
    assert half.weight_bytes == train.weight_bytes == 4 * (
        216 + 16 + 216 + 216 + 16 + 16) + 4640
    assert 2 * (half.total - half.weight_bytes) == (
        train.total - train.weight_bytes)


class _Gated(nn.Module):
    """A conv, an in-place ReLU, a pooled gate multiplied in and a
    residual sum, the last two outside leaf modules."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(4, 4, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.gate = nn.Sigmoid()
        self.skip = nn.Identity()

    def forward(self, x):
        y = self.relu(self.conv(x))
        y = y * self.gate(self.pool(y))
        y += self.skip(x)
        return y


def test_hook_rules_by_hand():
    model = _Gated()
    n = 2 * 4 * 3 * 5 * 5  # a feature of (2, 4, 3, 5, 5)
    c = 2 * 4
    infer = module_traffic(model, (2, 4, 3, 5, 5), 4, 'infer')
    forward = 4 * (
        (2 * n + 16) + 2 * n  # conv (reads 16 weights too), ReLU
        + (n + c) + 2 * c  # pool, sigmoid
        + (n + c + n) + 3 * n)  # product, in-place sum; Identity: nothing
    assert infer.total == forward
    assert infer.ops == 6
    train = module_traffic(model, (2, 4, 3, 5, 5), 4, 'train')
    # the input needs no gradient: the conv writes only its weight's, and
    # the sum only the gradient of the product
    backward = 4 * (
        (n + 16 + n + 16)  # conv: grad out, grad W, saved x and W
        + 3 * n  # ReLU: grad out, grad in, its result
        + (c + n)  # pool: grad out, grad in
        + 3 * c  # sigmoid
        + (n + n + c + n + c)  # product: grad out, grads of x and gate,
        + 2 * n)  # both factors saved; sum: grad out, grad of one input
    assert train.forward == forward
    assert train.backward == backward
    assert train.update == 5 * 4 * 16
    assert train.by_kind['conv'] == 4 * (2 * n + 16) + 4 * (2 * n + 32)
    # the module is left as it was
    assert model.training and model.conv.weight.device.type == 'cpu'
    assert model.conv.weight.grad is None


def test_max_pooling_saves_its_indices():
    model = nn.Sequential(nn.Conv3d(2, 2, 1), nn.MaxPool3d((1, 2, 2)))
    a = module_traffic(model, (1, 2, 1, 4, 4), 4, 'train')
    b = module_traffic(nn.Sequential(nn.Conv3d(2, 2, 1),
                                     nn.AvgPool3d((1, 2, 2))),
                       (1, 2, 1, 4, 4), 4, 'train')
    assert a.total - b.total == 8 * 2 * 4  # int64 index per output element


def test_update_counts_every_parameter_and_frozen_ones_get_nothing():
    for name in ('E3D-XS', 'E3D-M'):
        params = compute_cost(get_preset(name), 32, 4).params
        assert structure_traffic(name, 32, 4).update == 20 * params
    model = E3D(arch='E3D-XS', frozen_stages=1)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = module_traffic(model, (1, 3, 4, 32, 32), 4, 'train')
    full = structure_traffic('E3D-XS', 32, 4, 1, 4, 'train')
    assert frozen.update == 20 * trained < full.update
    assert frozen.forward == full.forward
    assert frozen.backward < full.backward
    # restored: the frozen stages stay in eval mode, the rest in train
    assert not model.blocks[0].training and model.blocks[2].training


def test_values_scale_linearly_with_the_batch():
    structure = get_preset('E3D-XS')
    for mode, e in SETTINGS:
        one = structure_traffic(structure, 40, 4, 1, e, mode)
        three = structure_traffic(structure, 40, 4, 3, e, mode)
        assert three.weight_bytes == one.weight_bytes
        assert three.total - three.weight_bytes == 3 * (
            one.total - one.weight_bytes)
        # pooling, sums and products have no parameters
        assert three.by_kind['other'] == 3 * one.by_kind['other'] > 0
    from mmaction.models.backbones import X3D
    x3d = X3D(gamma_w=1, gamma_b=2.25, gamma_d=2.2)
    one = module_traffic(x3d, (1, 3, 2, 32, 32), 2, 'train')
    four = module_traffic(x3d, (4, 3, 2, 32, 32), 2, 'train')
    assert four.weight_bytes == one.weight_bytes
    assert four.total - four.weight_bytes == 4 * (
        one.total - one.weight_bytes)
    assert one.by_kind['depthwise'] > 0 and one.by_kind['other'] > 0


def test_e3d_m_and_x3d_m_at_the_gpu_clip():
    """16x224x224, batch 8: the bench's figures (bench/README.md)."""
    train = structure_traffic('E3D-M', 224, 16, 8, 4, 'train')
    infer = structure_traffic('E3D-M', 224, 16, 8, 4, 'infer')
    assert (train.total, infer.total) == (37470528768, 15268292768)
    half = structure_traffic('E3D-M', 224, 16, 8, 2, 'train')
    assert half.total == 18764715264
    # ops by forward: 27 depthwise convs among them
    assert sum(count for op, count in structure_ops(
        get_preset('E3D-M'), 224, 16) if op.kind == 'depthwise') == 27
    assert time_floor(train.total, 4800) == pytest.approx(0.0078063, 1e-4)


def test_op_bytes_without_gradients_has_no_backward():
    op = Op('conv', 'weighted', ((10, False), ), (20, ), 5, 0)
    assert op_bytes(op, 4, True) == (4 * 30 + 4 * 5, 0)
    assert op_bytes(op._replace(grad_params=5), 2, True) == (
        2 * 30 + 4 * 5, 2 * 20 + 4 * 5 + 2 * 10 + 4 * 5)
    assert set(KINDS) == set(structure_traffic('E3D-XS', 32, 2).by_kind)


@pytest.mark.parametrize('call, message', [
    (lambda: structure_traffic('E3D-XS', mode='eval'),
     "structure_traffic: mode must be one of infer, train, got 'eval'"),
    (lambda: structure_traffic('E3D-XS', element_bytes=3),
     'structure_traffic: element_bytes must be one of 1, 2, 4, 8 (4 for '
     'float32, 2 for float16 / bfloat16), got 3'),
    (lambda: structure_traffic('E3D-XS', element_bytes=True),
     'structure_traffic: element_bytes must be one of 1, 2, 4, 8 (4 for '
     'float32, 2 for float16 / bfloat16), got True'),
    (lambda: structure_traffic('E3D-XS', batch=0),
     'structure_traffic: batch must be an integer >= 1, got 0'),
    (lambda: structure_traffic('E3D-XS', batch=2.0),
     'structure_traffic: batch must be an integer >= 1, got 2.0'),
    (lambda: structure_traffic('E3D-XS', frames=0),
     'structure_traffic: frames must be an integer >= 1, got 0'),
    (lambda: structure_traffic('E3D-XS', image_size='224'),
     'structure_traffic: image_size must be a positive integer or a '
     "(height, width) pair of positive integers, got '224'"),
    (lambda: structure_traffic('E3D-XXL'),
     "'E3D-XXL' is neither a preset (E3D-S, E3D-M, E3D-L, E3D-XS) nor an "
     'existing structure file (JSON or TinyNAS text)'),
    (lambda: structure_traffic('E3D-XS', depthwise_bytes=3),
     'structure_traffic: depthwise_bytes must be one of 1, 2, 4, 8 (4 for '
     'float32, 2 for float16 / bfloat16), got 3'),
    (lambda: module_traffic(nn.ReLU(), (1, 3), depthwise_bytes='4'),
     'module_traffic: depthwise_bytes must be one of 1, 2, 4, 8 (4 for '
     "float32, 2 for float16 / bfloat16), got '4'"),
    (lambda: module_traffic('E3D-XS', (1, 3, 4, 32, 32)),
     'module_traffic: model must be a torch.nn.Module, got str'),
    (lambda: module_traffic(nn.ReLU(), (1, 0, 4)),
     'module_traffic: input_shape must be a non-empty tuple of positive '
     'integers, got (1, 0, 4)'),
    (lambda: module_traffic(nn.ReLU(), (1, 3), mode='fast'),
     "module_traffic: mode must be one of infer, train, got 'fast'"),
    (lambda: time_floor(10, 0),
     'time_floor: bandwidth_gbs must be a finite positive number, got 0'),
    (lambda: time_floor(10, float('nan')),
     'time_floor: bandwidth_gbs must be a finite positive number, got nan'),
])
def test_bad_arguments_are_one_line(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_hook_count_of_a_model_with_a_kwarg_and_a_tuple_output():
    """Leaves see keyword inputs; a tuple output counts each tensor."""

    class Split(nn.Module):
        def forward(self, x, scale=None):
            return x[:, :1] * 1.0, x[:, 1:] * scale

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.split = Split()

        def forward(self, x):
            a, b = self.split(x, scale=torch.ones_like(x[:, 1:]))
            return a

    t = module_traffic(Net(), (1, 3, 4), 4, 'infer')
    # Split (a leaf): inputs x (12) and scale (8), outputs 4 and 8
    assert t.total == 4 * (12 + 8 + 4 + 8)


def test_depthwise_in_float32_under_autocast_by_hand():
    """One depthwise op computed at 4 bytes inside 2-byte activations:
    its own bytes at 4, plus a cast (read 2, write 4 or the reverse) of
    each operand in forward and of each gradient in backward."""
    op = Op('depthwise', 'weighted', ((10, True), ), (20, ), 5, 5)
    f4, b4 = op_bytes(op, 4, True)
    assert op_bytes(op, 2, True, 4) == (f4 + 6 * 30, b4 + 6 * 30)
    assert op_bytes(op, 2, False, 4) == (f4 + 6 * 30, 0)
    assert op_bytes(op, 2, True, 2) == op_bytes(op, 2, True)
    # only depthwise ops change
    conv = op._replace(kind='conv')
    assert op_bytes(conv, 2, True, 4) == op_bytes(conv, 2, True)
    frozen = op._replace(inputs=((10, False), ), grad_params=0)
    assert op_bytes(frozen, 2, True, 4) == (f4 + 6 * 30, 0)


def test_depthwise_fp32_casts_match_a_bf16_autocast_run():
    """The casts the count adds for ``E3D(depthwise_fp32=True)`` are the
    activation casts a CPU bfloat16 autocast step makes beyond those of
    the plain backbone (counted by a dispatch mode: bytes read + written
    by every ``_to_copy`` of a batch-sized tensor); the other kinds are
    those of the 2-byte count, the depthwise kind that of the 4-byte one
    plus the casts."""
    from torch.utils._python_dispatch import TorchDispatchMode

    batch, frames, size = 5, 4, 32

    class CastBytes(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            src = args[0]
            if (func is torch.ops.aten._to_copy.default
                    and src.dim() == 5 and src.shape[0] == batch
                    and out.dtype != src.dtype):
                self.total += src.numel() * (src.element_size() +
                                             out.element_size())
            return out

    casts = {}
    for flag in (False, True):
        torch.manual_seed(0)
        model = E3D(arch='E3D-XS', depthwise_fp32=flag).train()
        x = torch.randn(batch, 3, frames, size, size)
        counter = CastBytes()
        with counter, torch.autocast('cpu', dtype=torch.bfloat16):
            loss = model(x).float().square().mean()
        with counter:
            loss.backward()
        casts[flag] = counter.total
    measured = casts[True] - casts[False]
    shape = (batch, 3, frames, size, size)
    plain = module_traffic(model, shape, 2, 'train')
    mixed = module_traffic(model, shape, 2, 'train', depthwise_bytes=4)
    full = module_traffic(model, shape, 4, 'train')
    cast = mixed.by_kind['depthwise'] - full.by_kind['depthwise']
    assert cast == measured > 0
    assert {k: v for k, v in mixed.by_kind.items() if k != 'depthwise'} == {
        k: v for k, v in plain.by_kind.items() if k != 'depthwise'}
    assert mixed == structure_traffic(model.structure, size, frames, batch,
                                      2, 'train', 4)
    infer = structure_traffic(model.structure, size, frames, batch, 2,
                              'infer', 4)
    assert infer.by_kind['depthwise'] - structure_traffic(
        model.structure, size, frames, batch, 4,
        'infer').by_kind['depthwise'] > 0
