"""Structure data: validation errors, JSON round trip, TinyNAS reader."""
import json
import os
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
    # limits far above any network, so a huge value is not walked or built
    (1, {'L': 10**9}, "block 1 (dwbtn): field 'L' is 1000000000, more than "
     'the 1024 units a block may have'),
    (1, {'btn': 1 << 20}, "block 1 (dwbtn): field 'btn' is 1048576, more "
     'than the 65536 channels a block may have'),
    (1, {'k': 65}, "block 1 (dwbtn): field 'k' is 65, larger than the "
     'largest kernel a block may have (63)'),
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


# ---------------------------------------------------------------------------
# bad structure files: one StructureError line each, never another exception

def _json_with(index, **fields):
    """A JSON file text of :func:`base` with block ``index`` changed."""
    return json.dumps({'format': 'e3d-structure', 'version': 1,
                       'blocks': with_change(index, **fields)})


TINYNAS = ("{'best_structures': [[{'class': %s, 'in': 3, 'out': 8, 'k': 3, "
           "'kt': 1, 's': 2}]]}")
KINDS_LINE = 'one of conv, res, btn, dwbtn'

# (case, file text or bytes, expected start of the message after the path)
BAD_FILES = [
    ('deep JSON list', '[' * 100000 + ']' * 100000,
     'nested more than 32 levels deep'),
    ('deep JSON object', '{"a": ' * 50000 + '1' + '}' * 50000,
     'nested more than 32 levels deep'),
    ('deep TinyNAS literal', "{'best_structures': " + '(' * 100000 + ')' *
     100000 + '}', 'nested more than 32 levels deep'),
    ('deep, unclosed', '[' * 1000000, 'nested more than 32 levels deep'),
    ('list as kind', _json_with(1, kind=['dwbtn']),
     "block 1: field 'kind' must be a block kind name (" + KINDS_LINE +
     "), got ['dwbtn']"),
    ('dict as kind', _json_with(1, kind={}),
     "block 1: field 'kind' must be a block kind name"),
    ('dict as act', _json_with(1, act={}),
     "block 1 (dwbtn): field 'act' must be one of relu, swish or null, got "
     '{}'),
    ('list as act', _json_with(1, act=['relu']),
     "block 1 (dwbtn): field 'act' must be one of relu, swish or null"),
    ('list as class', TINYNAS % '[]',
     'block 0: unknown TinyNAS class []; supported: Conv3DKXBNRELU'),
    ('dict as class', TINYNAS % '{}', 'block 0: unknown TinyNAS class {}'),
    ('number key', "{'best_structures': [[{'kind': 'conv', 1: 2}]]}",
     'block 0: unknown field 1; allowed fields'),
    ('string width', _json_with(1, **{'in': '8'}),
     "block 1 (dwbtn): field 'in' must be a positive integer width, got '8'"),
    ('float width', _json_with(1, out=16.0),
     "block 1 (dwbtn): field 'out' must be a positive integer width, got "
     '16.0'),
    ('float kernel', _json_with(1, k=3.0),
     "block 1 (dwbtn): field 'k' must be an odd positive kernel size (1, 3, "
     '5, ...), got 3.0'),
    ('bool stride', _json_with(1, s=True),
     "block 1 (dwbtn): field 's' (spatial stride) must be 1 or 2, got True"),
    ('bool depth', _json_with(1, L=True),
     "block 1 (dwbtn): field 'L' (number of units) must be an integer >= 1, "
     'got True'),
    ('bool bottleneck', _json_with(1, btn=True),
     "block 1 (dwbtn): field 'btn' must be a positive integer width, got "
     'True'),
    ('NaN se', _json_with(1, se=float('nan')),
     "block 1 (dwbtn): field 'se' (squeeze-excitation ratio) must be a number"
     ' in [0, 1], 0 for none, got nan'),
    ('infinite width', _json_with(1, out=float('inf')),
     "block 1 (dwbtn): field 'out' must be a positive integer width, got "
     'inf'),
    ('bool se', _json_with(1, se=True),
     "block 1 (dwbtn): field 'se' (squeeze-excitation ratio) must be a "
     'number'),
    ('btn on a conv as a list', _json_with(0, btn=[]),
     "block 0 (conv): field 'btn' only applies to btn and dwbtn blocks"),
    ('huge name', _json_with(1, kind='x' * 100000),
     "block 1: unknown block kind 'xxxxxxxx"),
    ('bool version', '{"format": "e3d-structure", "version": true, '
     '"blocks": []}', "field 'version' is True; this plugin reads version 1"),
    ('float version', '{"version": 1.0, "blocks": []}',
     "field 'version' is 1.0; this plugin reads version 1"),
    ('list format', '{"format": ["e3d-structure"], "blocks": []}',
     "field 'format' is ['e3d-structure'], expected 'e3d-structure'"),
    ('blocks as a number', '{"blocks": 5}',
     'a structure is a list of block dicts, got int'),
    ('a bare number', '5', 'expected a list of blocks or a dict holding one,'
     ' got int'),
    ('block as a list', '[[1, 2]]', 'block 0: expected a dict, got list'),
    ('empty file', '', 'empty; a structure file holds a JSON object'),
    ('blank file', ' \n\t\n', 'empty; a structure file holds'),
    ('not UTF-8', b'\xff\xfe[{"kind": "conv"}]',
     'not UTF-8 text (byte 0xff at offset 0); save it as UTF-8'),
    ('too many digits', '[{"kind": "conv", "in": 1' + '0' * 5000 + '}]',
     'neither JSON nor a TinyNAS structure literal (SyntaxError: Exceeds '
     'the limit (4300 digits) for integer string conversion'),
    ('code', "__import__('os').system('true')",
     'neither JSON nor a TinyNAS structure literal'),
]


@pytest.mark.parametrize('case,content,message', BAD_FILES,
                         ids=[case for case, _, _ in BAD_FILES])
def test_bad_structure_files(tmp_path, case, content, message):
    path = tmp_path / 'bad.txt'
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(StructureError) as info:
        load_structure(str(path))
    text = str(info.value)
    assert text.startswith(f'{path}: {message}'), text
    assert '\n' not in text and len(text) < 400


def test_bom_is_accepted(tmp_path):
    path = tmp_path / 'bom.json'
    path.write_bytes(b'\xef\xbb\xbf' + json.dumps(base()).encode())
    assert load_structure(str(path)) == Structure.from_dicts(base())


def test_size_limit_is_checked_before_reading(tmp_path):
    import tracemalloc

    from e3d_plugin.structure import MAX_STRUCTURE_BYTES
    assert MAX_STRUCTURE_BYTES == 1 << 20
    huge = tmp_path / 'huge.json'
    with open(huge, 'wb') as f:  # a sparse 50 MB file
        f.truncate(50 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(StructureError) as info:
            load_structure(str(huge))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value) == (
        f'{huge}: larger than the 1048576 bytes a structure file may have '
        '(max_bytes); a structure file takes a few kB')
    assert peak < 100_000  # nothing of the file was read
    # just over the limit, and a custom limit
    over = tmp_path / 'over.json'
    over.write_text(json.dumps(base()) + ' ' * MAX_STRUCTURE_BYTES)
    with pytest.raises(StructureError, match='larger than the 1048576'):
        load_structure(str(over))
    small = tmp_path / 'small.json'
    small.write_text(json.dumps(base()))
    with pytest.raises(StructureError, match='larger than the 100 bytes'):
        load_structure(str(small), max_bytes=100)
    assert load_structure(str(small)) == Structure.from_dicts(base())
    with pytest.raises(StructureError, match='<string>: 20 characters, more '
                       'than the 10 a structure may have'):
        parse_structure(' ' * 20, max_chars=10)


def test_unusable_paths(tmp_path):
    cases = [
        (str(tmp_path), f'{tmp_path}: is a directory; give the structure '
         'file (JSON or TinyNAS text) inside it'),
        (str(tmp_path / 'a\x00b.json'), "'" + str(tmp_path) + "/a\\x00b.json"
         "': a file path cannot contain a NUL byte"),
        (str(tmp_path / 'missing.json'), f"'{tmp_path / 'missing.json'}' is "
         'neither a preset (E3D-S, E3D-M, E3D-L, E3D-XS) nor an existing '
         'structure file (JSON or TinyNAS text)'),
    ]
    fifo = tmp_path / 'fifo'
    if hasattr(os, 'mkfifo'):
        os.mkfifo(fifo)
        cases.append((str(fifo), f'{fifo}: is not a regular file (a device, '
                      'pipe or socket); give a structure file'))
    for path, message in cases:
        with pytest.raises(StructureError) as info:
            load_structure(path)
        assert str(info.value) == message
    with pytest.raises(StructureError, match='expected a preset name, a file '
                       'path, or a list of blocks, got int'):
        load_structure(5)
    with pytest.raises(StructureError, match='NUL byte'):
        resolve_structure(structure_file='a\x00b')


@pytest.mark.parametrize('kwargs,message', [
    (dict(arch=['E3D-M']), "arch ['E3D-M'] is not a preset; choose one of "
     'E3D-S, E3D-M, E3D-L, E3D-XS, or give structure / structure_file'),
    (dict(arch=7), 'arch 7 is not a preset'),
    (dict(structure='E3D-M'), "structure must be a list of block dicts, got "
     "'E3D-M'; for a preset give arch, for a file give structure_file"),
    (dict(structure=5), 'structure must be a list of block dicts, got 5'),
    (dict(structure_file=5), 'structure_file must be a path (a string), got '
     '5'),
    (dict(structure_file=['a.json']), 'structure_file must be a path'),
    (dict(structure=[{'kind': 'conv', 'in': 3, 'out': 8, 'k': [3]}]),
     "block 0 (conv): field 'k' must be an odd positive kernel size"),
])
def test_resolve_structure_argument_types(kwargs, message):
    with pytest.raises(StructureError) as info:
        resolve_structure(**kwargs)
    assert str(info.value).startswith(message)


def test_resolve_structure_accepts_the_json_dict(tmp_path):
    data = json.loads(Structure.from_dicts(base()).to_json())
    assert resolve_structure(structure=data) == Structure.from_dicts(base())
    path = save_structure(Structure.from_dicts(base()),
                          str(tmp_path / 's.json'))
    assert resolve_structure(structure_file=path) == Structure.from_dicts(
        base())


def test_failed_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    structure = Structure.from_dicts(base())
    # the target is a directory: the final rename fails
    target = tmp_path / 'taken'
    target.mkdir()
    with pytest.raises(OSError):
        save_structure(structure, str(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['taken']
    # the write itself fails half way
    path = tmp_path / 'half.json'

    def broken(self, indent=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(Structure, 'to_json', broken)
    with pytest.raises(KeyboardInterrupt):
        save_structure(structure, str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['taken']


def test_presets_do_not_import_structure():
    """The presets package is data: no import of the structure module, at
    the top or inside a function (the cycle the two had)."""
    import ast
    source = open(osp.join(REFERENCE_DIR, '__init__.py')).read()
    imported = [node.module for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.ImportFrom)]
    assert not any('structure' in (name or '') for name in imported)
    structure_py = osp.join(osp.dirname(REFERENCE_DIR), 'structure.py')
    tree = ast.parse(open(structure_py).read())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert not [n for n in ast.walk(node)
                        if isinstance(n, (ast.Import, ast.ImportFrom))], \
                node.name


def test_long_literal_is_refused_before_parsing(tmp_path):
    from e3d_plugin.structure import MAX_LITERAL_CHARS
    # 100 kB of TinyNAS literal would take ~50 MB in Python's parser
    text = "{'best_structures': [[" + "{'a': 0}, " * 10000 + ']]}'
    assert MAX_LITERAL_CHARS < len(text) < (1 << 20)
    path = tmp_path / 'long.txt'
    path.write_text(text)
    with pytest.raises(StructureError) as info:
        load_structure(str(path))
    assert str(info.value) == (
        f'{path}: not JSON (Expecting property name enclosed in double '
        'quotes: line 1 column 2 (char 1)), and at 100025 characters too long'
        ' to be read as a TinyNAS structure literal (at most 65536)')
    # the same size of JSON is read
    blocks = base() + [dict(kind='conv', **{'in': 32, 'out': 32}, k=1)] * 2000
    big = tmp_path / 'big.json'
    big.write_text(json.dumps(blocks))
    assert big.stat().st_size > MAX_LITERAL_CHARS
    assert len(load_structure(str(big))) == 2003
