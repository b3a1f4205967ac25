"""A 3D CNN architecture as plain data.

A :class:`Structure` is a tuple of :class:`Block` specs, in network order.
Each block is repeated ``L`` times ("units"); only its first unit changes the
width (``in`` -> ``out``) and applies the spatial stride ``s`` (there is no
temporal stride). Block kinds:

``conv``
    Conv3d ``(kt, k, k)`` - norm - activation. The stem and the final 1x1x1
    conv of a network are ``conv`` blocks.
``res``
    Basic residual unit: two ``(kt, k, k)`` convs (``in -> out -> out``).
``btn``
    Bottleneck unit: 1x1x1 (``in -> btn``), ``(kt, k, k)`` (``btn -> btn``),
    1x1x1 (``btn -> out``).
``dwbtn``
    Depthwise bottleneck unit, the E3D unit: as ``btn`` with a depthwise
    middle conv.

In residual kinds a unit whose input and output widths are equal adds an
identity shortcut (average-pooled 1x2x2 when the unit has stride 2); a unit
that changes the width has no shortcut. Optional per block: ``se`` (the
squeeze-excitation ratio, applied after the last ``(kt, k, k)`` conv of each
unit, 0 for none) and ``act`` (``'relu'`` or ``'swish'``; ``None`` uses the
backbone's ``act_cfg``).

JSON format (``save_structure`` / ``load_structure``)::

    {"format": "e3d-structure", "version": 1,
     "blocks": [
       {"kind": "conv", "in": 3, "out": 24, "k": 3, "kt": 1, "s": 2},
       {"kind": "dwbtn", "in": 24, "out": 24, "k": 5, "kt": 1, "s": 2,
        "L": 3, "btn": 32},
       ...]}

A bare list of block dicts is accepted too. Keys: ``kind``, ``in``, ``out``,
``k``, ``kt`` (default 1), ``s`` (default 1), ``L`` (default 1), ``btn``
(``btn`` and ``dwbtn`` only), ``se`` (default 0), ``act`` (default null).

TinyNAS text files (the format of the published E3D structures, a Python
literal ``{'best_structures': [[block, ...]], ...}``) are read with
:func:`ast.literal_eval`; ``Conv3DKXBNRELU`` maps to ``conv`` and
``SuperRes3DK1DWK1`` / ``Res3DK1DWK1`` to ``dwbtn``.
"""
import ast
import json
import os
import os.path as osp
from typing import Iterable, NamedTuple, Optional

KINDS = ('conv', 'res', 'btn', 'dwbtn')
RESIDUAL_KINDS = ('res', 'btn', 'dwbtn')
BOTTLENECK_KINDS = ('btn', 'dwbtn')
ACTIVATIONS = ('relu', 'swish')
#: Convs on the main path of one unit of each kind.
CONVS_PER_UNIT = {'conv': 1, 'res': 2, 'btn': 3, 'dwbtn': 3}

TINYNAS_CLASSES = {
    'Conv3DKXBNRELU': 'conv',
    'SuperRes3DK1DWK1': 'dwbtn',
    'Res3DK1DWK1': 'dwbtn',
}
# Keys of TinyNAS block dicts that carry no information for these kinds.
_TINYNAS_IGNORED = ('inner_class', )

JSON_FORMAT = 'e3d-structure'
JSON_VERSION = 1

# JSON key -> Block field.
_KEYS = {
    'kind': 'kind',
    'in': 'in_channels',
    'out': 'out_channels',
    'k': 'kernel',
    'kt': 'kernel_t',
    's': 'stride',
    'L': 'depth',
    'btn': 'bottleneck',
    'se': 'se',
    'act': 'act',
}


class StructureError(ValueError):
    """A structure, or the file holding one, is not usable."""


class Block(NamedTuple):
    """One block of a structure: a unit spec repeated ``depth`` times."""

    kind: str
    in_channels: int
    out_channels: int
    kernel: int
    kernel_t: int = 1
    stride: int = 1
    depth: int = 1
    bottleneck: int = 0
    se: float = 0.0
    act: Optional[str] = None

    @property
    def layers(self):
        """Number of main-path convs of the block (SE convs excluded)."""
        return CONVS_PER_UNIT[self.kind] * self.depth

    def to_dict(self):
        """The block as a JSON-ready dict (optional keys only when set)."""
        d = {
            'kind': self.kind,
            'in': self.in_channels,
            'out': self.out_channels,
            'k': self.kernel,
            'kt': self.kernel_t,
            's': self.stride,
            'L': self.depth,
        }
        if self.kind in BOTTLENECK_KINDS:
            d['btn'] = self.bottleneck
        if self.se:
            d['se'] = self.se
        if self.act is not None:
            d['act'] = self.act
        return d

    @classmethod
    def from_dict(cls, data, index=0):
        """Build a block from a JSON / config dict, checking its keys."""
        if not isinstance(data, dict):
            raise StructureError(
                f'block {index}: expected a dict, got {type(data).__name__}')
        data = dict(data)
        if 'kind' not in data and 'class' in data:
            name = data.pop('class')
            if name not in TINYNAS_CLASSES:
                raise StructureError(
                    f"block {index}: unknown TinyNAS class '{name}'; "
                    f'supported: {", ".join(TINYNAS_CLASSES)}')
            data['kind'] = TINYNAS_CLASSES[name]
            for key in _TINYNAS_IGNORED:
                data.pop(key, None)
        if 'kind' not in data:
            raise StructureError(
                f"block {index}: missing field 'kind' (one of "
                f'{", ".join(KINDS)})')
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise StructureError(
                f"block {index}: unknown field '{unknown[0]}'; allowed "
                f'fields: {", ".join(_KEYS)}')
        for key in ('in', 'out', 'k'):
            if key not in data:
                raise StructureError(
                    f"block {index} ({data['kind']}): missing field '{key}'")
        if data['kind'] in BOTTLENECK_KINDS and 'btn' not in data:
            raise StructureError(
                f"block {index} ({data['kind']}): missing field 'btn' (the "
                'bottleneck width)')
        return cls(**{_KEYS[key]: value for key, value in data.items()})


def se_width(channels, ratio, divisor=8):
    """Hidden width of a squeeze-excitation module on ``channels``.

    ``channels * ratio`` rounded to a multiple of ``divisor`` (at least
    ``divisor``), rounded up where rounding would lose more than 10%.
    """
    width = channels * ratio
    hidden = max(divisor, int(width + divisor / 2) // divisor * divisor)
    if hidden < 0.9 * width:
        hidden += divisor
    return hidden


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_block(block, index=0):
    """Raise :class:`StructureError` for the first fault of one block."""
    kind = block.kind
    if kind not in KINDS:
        raise StructureError(
            f"block {index}: unknown block kind '{kind}'; choose one of "
            f'{", ".join(KINDS)}')
    where = f'block {index} ({kind})'
    widths = [('in', block.in_channels), ('out', block.out_channels)]
    if kind in BOTTLENECK_KINDS:
        widths.append(('btn', block.bottleneck))
    elif block.bottleneck:
        raise StructureError(
            f"{where}: field 'btn' only applies to btn and dwbtn blocks; "
            'remove it')
    for key, value in widths:
        if not _is_int(value) or value < 1:
            raise StructureError(
                f"{where}: field '{key}' must be a positive integer width, "
                f'got {value!r}')
    for key, value in (('k', block.kernel), ('kt', block.kernel_t)):
        if not _is_int(value) or value < 1 or value % 2 == 0:
            raise StructureError(
                f"{where}: field '{key}' must be an odd positive kernel size "
                f'(1, 3, 5, ...), got {value!r}')
    if not _is_int(block.stride) or block.stride not in (1, 2):
        raise StructureError(
            f"{where}: field 's' (spatial stride) must be 1 or 2, got "
            f'{block.stride!r}')
    if not _is_int(block.depth) or block.depth < 1:
        raise StructureError(
            f"{where}: field 'L' (number of units) must be an integer >= 1, "
            f'got {block.depth!r}')
    se = block.se
    if isinstance(se, bool) or not isinstance(se, (int, float)) or not (
            0 <= se <= 1):
        raise StructureError(
            f"{where}: field 'se' (squeeze-excitation ratio) must be a number "
            f'in [0, 1], 0 for none, got {se!r}')
    if block.act is not None and block.act not in ACTIVATIONS:
        raise StructureError(
            f"{where}: field 'act' must be one of {', '.join(ACTIVATIONS)} "
            f'or null, got {block.act!r}')


class Structure(tuple):
    """An immutable, hashable sequence of :class:`Block`, in network order."""

    __slots__ = ()

    def __new__(cls, blocks: Iterable[Block] = ()):
        return super().__new__(cls, blocks)

    @classmethod
    def from_dicts(cls, blocks, validate=True):
        """Build (and by default validate) a structure from block dicts."""
        if isinstance(blocks, dict):
            blocks = _unwrap(blocks, '<dict>')
        if not isinstance(blocks, (list, tuple)):
            raise StructureError(
                'a structure is a list of block dicts, got '
                f'{type(blocks).__name__}')
        structure = cls(
            b if isinstance(b, Block) else Block.from_dict(b, i)
            for i, b in enumerate(blocks))
        if validate:
            structure.validate()
        return structure

    def to_dicts(self):
        """The blocks as a list of JSON-ready dicts."""
        return [block.to_dict() for block in self]

    def validate(self):
        """Raise :class:`StructureError` for the first fault; return self."""
        if not self:
            raise StructureError('a structure needs at least one block')
        previous = None
        for index, block in enumerate(self):
            if not isinstance(block, Block):
                raise StructureError(
                    f'block {index}: expected a Block, got '
                    f'{type(block).__name__}')
            check_block(block, index)
            if previous is not None and block.in_channels != previous:
                raise StructureError(
                    f"block {index} ({block.kind}): field 'in' is "
                    f'{block.in_channels} but block {index - 1} outputs '
                    f"{previous} channels; the channel chain is broken, set "
                    f"'in' to {previous}")
            previous = block.out_channels
        return self

    @property
    def in_channels(self):
        """Input channels of the network (3 for RGB)."""
        return self[0].in_channels

    @property
    def out_channels(self):
        """Channels of the last block's output."""
        return self[-1].out_channels

    @property
    def layers(self):
        """Number of main-path convs of the whole network."""
        return sum(block.layers for block in self)

    def to_json(self, indent=None):
        """The structure in the documented JSON format."""
        return json.dumps(
            {
                'format': JSON_FORMAT,
                'version': JSON_VERSION,
                'blocks': self.to_dicts()
            },
            indent=indent)

    def describe(self):
        """One line per block, for logs."""
        return '\n'.join(
            f'{i}: ' + ', '.join(f'{k}={v}' for k, v in b.to_dict().items())
            for i, b in enumerate(self))

    def __repr__(self):
        return f'Structure({list(self)!r})'


def _unwrap(data, source):
    """Return the block list held by a JSON / TinyNAS top-level object."""
    if isinstance(data, (list, tuple)):
        return data
    if not isinstance(data, dict):
        raise StructureError(
            f'{source}: expected a list of blocks or a dict holding one, got '
            f'{type(data).__name__}')
    if 'blocks' in data:
        fmt = data.get('format', JSON_FORMAT)
        if fmt != JSON_FORMAT:
            raise StructureError(
                f"{source}: field 'format' is {fmt!r}, expected "
                f'{JSON_FORMAT!r}')
        version = data.get('version', JSON_VERSION)
        if version != JSON_VERSION:
            raise StructureError(
                f"{source}: field 'version' is {version!r}; this plugin reads "
                f'version {JSON_VERSION}')
        return data['blocks']
    if 'best_structures' in data:
        best = data['best_structures']
        if not isinstance(best, (list, tuple)) or not best:
            raise StructureError(
                f"{source}: field 'best_structures' must be a non-empty list "
                'of structures')
        return best[0]
    if 'structure_info' in data:
        return data['structure_info']
    raise StructureError(
        f"{source}: no 'blocks', 'best_structures' or 'structure_info' field "
        'found')


def parse_structure(text, source='<string>'):
    """Parse JSON or TinyNAS text (a Python literal, never ``eval``-ed)."""
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError,
                RecursionError) as e:
            raise StructureError(
                f'{source}: neither JSON nor a TinyNAS structure literal '
                f'({type(e).__name__}: {e})') from None
    try:
        return Structure.from_dicts(_unwrap(data, source))
    except StructureError as e:
        if str(e).startswith(source):
            raise
        raise StructureError(f'{source}: {e}') from None


def load_structure(source):
    """Load a structure from a preset name, a JSON file or a TinyNAS file.

    ``source`` may also be a :class:`Structure` or a list of block dicts.
    """
    if isinstance(source, Structure):
        return source.validate()
    if isinstance(source, (list, tuple)):
        return Structure.from_dicts(source)
    if not isinstance(source, (str, os.PathLike)):
        raise StructureError(
            'expected a preset name, a file path, or a list of blocks, got '
            f'{type(source).__name__}')
    from .presets import PRESETS, get_preset
    if str(source) in PRESETS:
        return get_preset(str(source))
    path = os.fspath(source)
    if not osp.isfile(path):
        raise StructureError(
            f"'{path}' is neither a preset ({', '.join(PRESETS)}) nor an "
            'existing structure file (JSON or TinyNAS text)')
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise StructureError(f'{path}: cannot be read ({e})') from None
    return parse_structure(text, path)


def save_structure(structure, path):
    """Write ``structure`` as JSON to ``path`` (atomically)."""
    structure = Structure.from_dicts(structure) if not isinstance(
        structure, Structure) else structure.validate()
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(structure.to_json(indent=2) + '\n')
    os.replace(tmp, path)
    return path


def resolve_structure(arch=None, structure=None, structure_file=None):
    """Return the structure named by exactly one of the three arguments."""
    given = [name for name, value in (('arch', arch), ('structure', structure),
                                      ('structure_file', structure_file))
             if value is not None]
    if len(given) != 1:
        raise StructureError(
            'give exactly one of arch (a preset name), structure (a list of '
            f'blocks) or structure_file (a path); got {given or "none"}')
    if arch is not None:
        from .presets import PRESETS, get_preset
        if arch not in PRESETS:
            raise StructureError(
                f"arch '{arch}' is not a preset; choose one of "
                f"{', '.join(PRESETS)}, or give structure / structure_file")
        return get_preset(arch)
    if structure is not None:
        return load_structure(list(structure) if not isinstance(
            structure, Structure) else structure)
    if not osp.isfile(os.fspath(structure_file)):
        raise StructureError(
            f"structure_file '{structure_file}' does not exist")
    return load_structure(structure_file)
