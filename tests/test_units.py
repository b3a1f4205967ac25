"""One walk over a structure's units, and the rules defined once."""
import ast
import os.path as osp
import random

import pytest

from e3d_plugin import cost as cost_module
from e3d_plugin.cost import analyze_cost, compute_cost, output_shape, unit_cost
from e3d_plugin.nas import E3DSearchSpace, STEntrScore
from e3d_plugin.nas.latency import UnitKey, block_units, structure_units
from e3d_plugin.structure import Block, Structure, load_structure
from e3d_plugin.units import (ACT_CFGS, ACTIVATIONS, CONVS_PER_UNIT, KINDS,
                              Unit, block_input_sizes, conv_output_size,
                              iter_units, score_output_size)
from tests.helpers import ROOT


def small():
    return Structure.from_dicts([
        dict(kind='conv', **{'in': 3, 'out': 8}, k=3, kt=1, s=2),
        dict(kind='dwbtn', **{'in': 8, 'out': 16}, k=3, kt=3, s=2, L=3,
             btn=32, se=0.25, act='swish'),
        dict(kind='res', **{'in': 16, 'out': 16}, k=5, kt=1, s=2, L=1),
        dict(kind='conv', **{'in': 16, 'out': 32}, k=1, kt=1, s=1),
    ])


def test_iter_units_records():
    units = list(iter_units(small(), (37, 30), 5))
    assert units == [
        Unit(0, 0, 1, 'conv', 3, 8, 3, 1, 2, 0, 0.0, None, (5, 37, 30),
             (5, 19, 15)),
        Unit(1, 0, 1, 'dwbtn', 8, 16, 3, 3, 2, 32, 0.25, 'swish',
             (5, 19, 15), (5, 10, 8)),
        Unit(1, 1, 2, 'dwbtn', 16, 16, 3, 3, 1, 32, 0.25, 'swish',
             (5, 10, 8), (5, 10, 8)),
        Unit(2, 0, 1, 'res', 16, 16, 5, 1, 2, 0, 0.0, None, (5, 10, 8),
             (5, 5, 4)),
        Unit(3, 0, 1, 'conv', 16, 32, 1, 1, 1, 0, 0.0, None, (5, 5, 4),
             (5, 5, 4)),
    ]
    assert [u.layers for u in units] == [1, 3, 6, 2, 1]
    assert sum(u.layers for u in units) == small().layers
    assert block_input_sizes(small(), (37, 30), 5) == [
        (5, 37, 30), (5, 19, 15), (5, 10, 8), (5, 5, 4)]


@pytest.mark.parametrize('image_size,frames,message', [
    ('224', 16, "image_size must be a positive integer or a (height, width) "
     "pair of positive integers, got '224'"),
    (224.0, 16, 'image_size must be a positive integer'),
    (True, 16, 'image_size must be a positive integer'),
    ((224, 224, 3), 16, 'image_size must be a positive integer'),
    (0, 16, 'image_size must be a positive integer'),
    (224, 0, 'frames must be an integer >= 1, got 0'),
    (224, '16', "frames must be an integer >= 1, got '16'"),
])
def test_iter_units_checks_the_clip(image_size, frames, message):
    # checked at the call, before any unit is produced
    with pytest.raises(ValueError) as info:
        iter_units(small(), image_size, frames)
    assert str(info.value) == message or str(info.value).startswith(message)


def test_size_rules():
    # the backbone rounds up, the score down (its published numbers need it)
    assert [conv_output_size(s, 2) for s in (39, 40, 1, 7)] == [20, 20, 1, 4]
    assert [score_output_size(s, 2) for s in (39, 40, 1, 7)] == [19, 20, 0, 3]
    assert conv_output_size(39, 1) == score_output_size(39, 1) == 39


def test_the_score_keeps_floor_division(monkeypatch):
    """E3D-L at 312 px passes through 39 px, where floor and ceil differ:
    only floor gives the published score."""
    structure = load_structure('E3D-L')
    assert STEntrScore(312, 16)(structure) == pytest.approx(411.8081687491,
                                                            abs=1e-9)
    from e3d_plugin.nas import score as score_module
    monkeypatch.setattr(score_module, 'score_output_size', conv_output_size)
    ceil = STEntrScore(312, 16)(structure)
    assert abs(ceil - 411.8081687491) > 1e-3


def random_structures(count, seed=0):
    """Structures of every kind, with SE and activations, from the space."""
    template = Structure.from_dicts([
        dict(kind='conv', **{'in': 3, 'out': 16}, k=3, kt=1, s=2),
        dict(kind='dwbtn', **{'in': 16, 'out': 24}, k=3, kt=1, s=2, L=2,
             btn=48, se=0.25),
        dict(kind='btn', **{'in': 24, 'out': 48}, k=3, kt=3, s=2, L=2,
             btn=96, act='swish'),
        dict(kind='res', **{'in': 48, 'out': 64}, k=3, kt=3, s=1, L=1,
             se=0.0625, act='relu'),
        dict(kind='dwbtn', **{'in': 64, 'out': 96}, k=3, kt=3, s=2, L=1,
             btn=192),
        dict(kind='conv', **{'in': 96, 'out': 128}, k=1, kt=1, s=1),
    ])
    space = E3DSearchSpace(image_size=97, frames=7, kinds=KINDS,
                           kernels=((1, 3), (1, 5), (3, 3), (3, 5)),
                           max_depth=4, kernel_margin=1.0)
    rng = random.Random(seed)
    structures = []
    for index in range(count):
        structure = space.sample(template, rng)
        for _ in range(index % 4):
            structure = space.mutate(structure, rng)
        structures.append(structure.validate())
    return structures


def test_fast_cost_equals_the_walk_on_random_structures():
    """compute_cost (memoised blocks) and analyze_cost (the walk) agree, on
    odd clip sizes where rounding matters, cold and warm."""
    structures = random_structures(300)
    assert len({s for s in structures}) > 250
    kinds = {block.kind for s in structures for block in s[1:-1]}
    assert kinds == set(KINDS)
    sizes = [((97, 61), 7), (33, 3), ((225, 129), 16)]
    for structure in structures:
        for image_size, frames in sizes:
            report = analyze_cost(structure, image_size, frames)
            walk = [unit_cost(u) for u in iter_units(structure, image_size,
                                                     frames)]
            expected = (sum(f for f, _ in walk), sum(p for _, p in walk),
                        structure.layers)
            assert (report.flops, report.params, report.layers) == expected
            cost_module._BLOCK_MEMO.clear()
            assert tuple(compute_cost(structure, image_size,
                                      frames)) == expected
            assert tuple(compute_cost(structure, image_size,
                                      frames)) == expected  # memoised
            for options in ({}, dict(act='swish'), dict(with_cp=True)):
                report = analyze_cost(structure, image_size, frames,
                                      **options)
                memory = (report.max_feature, report.activation_bytes)
                assert memory == (
                    max(b.max_feature for b in report.blocks),
                    sum(b.activation_bytes for b in report.blocks))
                cost_module._OPTION_MEMOS.clear()
                for _ in range(2):  # cold, then memoised
                    cost = compute_cost(structure, image_size, frames,
                                        **options)
                    assert (cost.max_feature,
                            cost.activation_bytes) == memory
            assert output_shape(structure, image_size, frames) == \
                report.blocks[-1].out_shape


def test_cost_memo_is_bounded(monkeypatch):
    monkeypatch.setattr(cost_module, '_MEMO_LIMIT', 10)
    cost_module._BLOCK_MEMO.clear()
    for structure in random_structures(20, seed=1):
        compute_cost(structure, 64, 4)
        assert len(cost_module._BLOCK_MEMO) <= 10


def test_latency_keys_are_the_walks_units():
    for structure in random_structures(50, seed=2):
        units = list(iter_units(structure, (97, 61), 7))
        keys = structure_units(structure, (97, 61), 7, act='relu')
        assert keys == [(UnitKey.of(u, 'relu'), u.count) for u in units]
        for (key, count), unit in zip(keys, units):
            assert (key.frames, key.height, key.width) == unit.in_size
            assert key.act == (unit.act or 'relu')
        height, width = 97, 61
        rows = analyze_cost(structure, (97, 61), 7).blocks
        for block, row in zip(structure, rows):
            _, height, width = block_units(block, 7, height, width)
            assert (height, width) == row.out_shape[2:]


def test_space_fits_kernels_to_the_walks_input_sizes():
    space = E3DSearchSpace(image_size=40, frames=5,
                           kernels=((1, 3), (1, 5), (3, 3), (5, 3)),
                           kernel_margin=1.5)
    structure = random_structures(1)[0]
    layout = space._layout(structure)
    inputs = block_input_sizes(structure, 40, 5)
    assert [size[1] for size in inputs] == [40, 20, 10, 5, 5, 3]
    for allowed, (frames, height, width) in zip(layout.kernels, inputs):
        assert allowed == tuple(
            (kt, k) for kt, k in space.kernels
            if 1.5 * k <= min(height, width) and 1.5 * kt <= frames)
    assert layout.kernels[3] == ((1, 3), (3, 3))  # 5 px: k=5 needs 7.5
    assert layout.kernels[5] == ()  # 3 px: no 3x3 (needs 4.5)


def test_rules_defined_once():
    from e3d_plugin import structure as structure_module
    from e3d_plugin.models import blocks
    from e3d_plugin.nas.latency import table
    assert blocks._ACTIVATIONS is ACT_CFGS
    assert structure_module.ACTIVATIONS is ACTIVATIONS
    assert structure_module.CONVS_PER_UNIT is CONVS_PER_UNIT
    assert structure_module.KINDS is KINDS
    assert table.ACTIVATIONS is ACTIVATIONS
    assert ACTIVATIONS == ('relu', 'swish')
    assert {k: v['type'] for k, v in ACT_CFGS.items()} == {'relu': 'ReLU',
                                                           'swish': 'SiLU'}
    assert Block('res', 8, 8, 3, depth=4).layers == 4 * CONVS_PER_UNIT['res']
    # the hot paths unpack blocks in this order
    assert Block._fields == ('kind', 'in_channels', 'out_channels', 'kernel',
                             'kernel_t', 'stride', 'depth', 'bottleneck',
                             'se', 'act')
    # no module spells the output-size formula out again
    package = osp.join(ROOT, 'e3d_plugin')
    for name in ('cost.py', 'structure.py', 'nas/space.py', 'nas/score.py',
                 'nas/latency/keys.py', 'nas/latency/table.py'):
        source = open(osp.join(package, name)).read()
        assert '- 1) //' not in source, name
        assert '//=' not in source, name
    # and the tuples of kinds and activations exist once, in units.py
    for name in ('structure.py', 'nas/latency/table.py', 'models/blocks.py'):
        tree = ast.parse(open(osp.join(package, name)).read())
        assigned = {target.id for node in ast.walk(tree)
                    if isinstance(node, ast.Assign)
                    for target in node.targets
                    if isinstance(target, ast.Name)}
        assert not assigned & {'KINDS', 'ACTIVATIONS', 'CONVS_PER_UNIT',
                               '_ACTIVATIONS'}, name
