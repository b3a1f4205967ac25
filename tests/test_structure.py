"""Structure data: validation errors, JSON round trip, TinyNAS reader."""
import json
import os.path as osp

import pytest

from e3d_plugin.presets import PRESETS, preset_path
from e3d_plugin.structure import (Block, Structure, StructureError,
                                  load_structure, parse_structure,
                                  resolve_structure, save_structure, se_width)
from tests.helpers import REFERENCE_DIR


def base():
    return [
        {'kind': 'conv', 'in': 3, 'out': 8, 'k': 3, 'kt': 1, 's': 2},
        {'kind': 'dwbtn', 'in': 8, 'out': 16, 'k': 3, 'kt': 3, 's': 2,
         'L': 2, 'btn': 32},
        {'kind': 'conv', 'in': 16, 'out': 32, 'k': 1, 'kt': 1, 's': 1},
    ]


def with_change(index, **fields):
    blocks = base()
    blocks[index].update(fields)
    return blocks


@pytest.mark.parametrize('index,fields,message', [
    (1, {'in': 9}, "block 1 (dwbtn): field 'in' is 9 but block 0 outputs 8 "
     "channels; the channel chain is broken, set 'in' to 8"),
    (1, {'s': 3}, "block 1 (dwbtn): field 's' (spatial stride) must be 1 or 2"
     ', got 3'),
    (1, {'k': 4}, "block 1 (dwbtn): field 'k' must be an odd positive kernel"
     ' size (1, 3, 5, ...), got 4'),
    (1, {'kt': 2}, "block 1 (dwbtn): field 'kt' must be an odd positive "
     'kernel size'),
    (1, {'L': 0}, "block 1 (dwbtn): field 'L' (number of units) must be an "
     'integer >= 1, got 0'),
    (1, {'kind': 'sepconv'}, "block 1: unknown block kind 'sepconv'; choose "
     'one of conv, res, btn, dwbtn'),
    (1, {'out': 0}, "block 1 (dwbtn): field 'out' must be a positive integer "
     'width, got 0'),
    (1, {'btn': -4}, "block 1 (dwbtn): field 'btn' must be a positive integer"
     ' width, got -4'),
    (0, {'in': 2.5}, "block 0 (conv): field 'in' must be a positive integer "
     'width, got 2.5'),
    (1, {'se': 1.5}, "block 1 (dwbtn): field 'se' (squeeze-excitation ratio) "
     'must be a number in [0, 1]'),
    (1, {'act': 'gelu'}, "block 1 (dwbtn): field 'act' must be one of relu, "
     "swish or null, got 'gelu'"),
    (0, {'btn': 8}, "block 0 (conv): field 'btn' only applies to btn and "
     'dwbtn blocks'),
    (1, {'bogus': 1}, "block 1: unknown field 'bogus'"),
])
def test_every_validation_error(index, fields, message):
    with pytest.raises(StructureError) as info:
        Structure.from_dicts(with_change(index, **fields))
    assert str(info.value).startswith(message)


def test_missing_fields_and_empty():
    blocks = base()
    del blocks[1]['btn']
    with pytest.raises(StructureError, match="block 1 \\(dwbtn\\): missing "
                       "field 'btn'"):
        Structure.from_dicts(blocks)
    blocks = base()
    del blocks[2]['k']
    with pytest.raises(StructureError, match="block 2 \\(conv\\): missing "
                       "field 'k'"):
        Structure.from_dicts(blocks)
    with pytest.raises(StructureError, match='at least one block'):
        Structure.from_dicts([])
    with pytest.raises(StructureError, match="missing field 'kind'"):
        Structure.from_dicts([{'in': 3, 'out': 8, 'k': 3}])


def test_defaults_and_layers():
    s = Structure.from_dicts(base())
    assert s[0] == Block('conv', 3, 8, 3, 1, 2, 1, 0, 0.0, None)
    assert s[1].depth == 2 and s[1].bottleneck == 32
    assert s.layers == 1 + 2 * 3 + 1
    assert (s.in_channels, s.out_channels) == (3, 32)
    assert hash(s) == hash(Structure.from_dicts(base()))


def test_json_round_trip(tmp_path, structure_of):
    for kind in ('res', 'btn', 'dwbtn'):
        s = Structure.from_dicts(structure_of(kind, se=0.25, act='swish'))
        path = save_structure(s, str(tmp_path / f'{kind}.json'))
        data = json.load(open(path))
        assert data['format'] == 'e3d-structure' and data['version'] == 1
        assert data['blocks'][1]['se'] == 0.25
        assert data['blocks'][1]['act'] == 'swish'
        assert load_structure(path) == s
    # a bare list of blocks is a valid file too
    bare = tmp_path / 'bare.json'
    bare.write_text(json.dumps(base()))
    assert load_structure(str(bare)) == Structure.from_dicts(base())


def test_json_errors_name_the_file(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"format": "e3d-structure", "version": 7, "blocks": []}')
    with pytest.raises(StructureError, match="bad.json: field 'version' is 7"):
        load_structure(str(bad))
    broken = tmp_path / 'broken.json'
    broken.write_text('[{"kind": "conv", ')
    with pytest.raises(StructureError,
                       match='broken.json: neither JSON nor a TinyNAS'):
        load_structure(str(broken))
    chain = tmp_path / 'chain.json'
    chain.write_text(json.dumps(with_change(1, **{'in': 5})))
    with pytest.raises(StructureError, match="chain.json: block 1 \\(dwbtn\\)"
                       ": field 'in' is 5"):
        load_structure(str(chain))
    with pytest.raises(StructureError, match='neither a preset'):
        load_structure(str(tmp_path / 'missing.json'))


def test_tinynas_reader_never_evaluates(tmp_path):
    evil = tmp_path / 'evil.txt'
    evil.write_text("__import__('os').system('touch %s')" %
                    (tmp_path / 'pwned'))
    with pytest.raises(StructureError, match='neither JSON nor a TinyNAS'):
        load_structure(str(evil))
    assert not osp.exists(tmp_path / 'pwned')


@pytest.mark.parametrize('name,depths,btns,outs', [
    ('E3D_S.txt', [1, 3, 6, 6, 6, 6, 1], [0, 32, 96, 176, 176, 384, 0],
     [24, 24, 48, 120, 120, 256, 512]),
    ('E3D_M.txt', [1, 3, 6, 6, 6, 6, 1], [0, 32, 96, 176, 176, 464, 0],
     [24, 24, 64, 120, 120, 184, 512]),
    ('E3D_L.txt', [1, 3, 13, 13, 13, 13, 1], [0, 32, 120, 176, 176, 480, 0],
     [24, 24, 48, 120, 120, 192, 512]),
])
def test_tinynas_reader_on_reference_files(name, depths, btns, outs):
    s = load_structure(osp.join(REFERENCE_DIR, name))
    assert [b.depth for b in s] == depths
    assert [b.bottleneck for b in s] == btns
    assert [b.out_channels for b in s] == outs
    assert [b.kind for b in s] == ['conv'] + ['dwbtn'] * 5 + ['conv']
    assert [b.stride for b in s] == [2, 2, 2, 2, 1, 2, 1]
    assert [(b.kernel_t, b.kernel) for b in s] == [(1, 3), (1, 5)] + [
        (3, 3)] * 4 + [(1, 1)]


def test_presets_equal_reference_files():
    assert list(PRESETS) == ['E3D-S', 'E3D-M', 'E3D-L', 'E3D-XS']
    for name in PRESETS:
        assert osp.dirname(preset_path(name)) == REFERENCE_DIR
    assert load_structure('E3D-M').layers == 83
    assert load_structure('E3D-L').layers == 167


def test_tinynas_unknown_class():
    text = "{'best_structures': [[{'class': 'SuperResK1KXK1', 'in': 3}]]}"
    with pytest.raises(StructureError, match="unknown TinyNAS class "
                       "'SuperResK1KXK1'"):
        parse_structure(text)


def test_resolve_structure_exactly_one():
    assert resolve_structure(arch='E3D-S') == load_structure('E3D-S')
    assert resolve_structure(structure=base()) == Structure.from_dicts(base())
    with pytest.raises(StructureError, match='exactly one of'):
        resolve_structure(arch='E3D-S', structure=base())
    with pytest.raises(StructureError, match="arch 'E3D-XXL' is not a preset"):
        resolve_structure(arch='E3D-XXL')
    with pytest.raises(StructureError, match="structure_file 'nope.json' does "
                       'not exist'):
        resolve_structure(structure_file='nope.json')


def test_se_width():
    assert se_width(64, 0.25) == 16
    assert se_width(24, 0.0625) == 8
    assert se_width(100, 0.25) == 24
