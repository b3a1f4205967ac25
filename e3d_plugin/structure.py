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

Reading a file is guarded, since structure files come from anywhere: a file
larger than :data:`MAX_STRUCTURE_BYTES` (1 MiB; ``max_bytes``) is refused
before it is read, a text nested deeper than :data:`MAX_NESTING` levels
before it is parsed, a TinyNAS literal longer than
:data:`MAX_LITERAL_CHARS` (64 KiB) before Python's parser takes hundreds of
bytes of memory per character of it; directories, devices, paths with a NUL
byte, non-UTF-8 and empty files, and values of the wrong type (a list
where a name belongs, ``"24"``, ``24.0`` or ``true`` where a width belongs,
NaN) each fail with one :class:`StructureError` line naming the file, block
and field.

Preset names (:data:`~e3d_plugin.presets.PRESETS`) are resolved here; the
``presets`` package is data only and imports nothing from this module.
"""
import ast
import functools
import json
import os
import os.path as osp
import re
import stat
from typing import Iterable, NamedTuple, Optional

from .checks import is_int, is_number, short_repr
from .fileio import atomic_write
from .presets import PRESETS, preset_path
# The unit rules live in one place; they are re-exported here because this
# is where a structure's fields are documented.
from .units import (ACTIVATIONS, BOTTLENECK_KINDS, CONVS_PER_UNIT,  # noqa
                    KINDS, RESIDUAL_KINDS)

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


#: Largest structure file (bytes) -- or text (characters) -- read by
#: default, checked before anything is read or parsed. The published
#: structures take about 1 kB; a 100-block JSON file about 20 kB.
MAX_STRUCTURE_BYTES = 1 << 20
#: Longest text read as a TinyNAS literal (JSON is read up to the file
#: limit). Python's literal parser needs about 500 bytes of memory per
#: character (1 MiB of literal: 0.5 GB); the published TinyNAS files take
#: about 1 kB.
MAX_LITERAL_CHARS = 64 * 1024
#: Deepest bracket nesting a structure text may have (the formats need 4:
#: ``{'best_structures': [[{...}]]}``); checked before parsing, so a file
#: nested thousands of levels deep costs a scan, not a crash of the parser.
MAX_NESTING = 32
#: Upper bounds of a block's fields, far above any video network's (E3D-L:
#: widths up to a few thousand, kernels up to 5, at most a dozen units a
#: block), so that a mistyped or hostile value is refused in one line
#: instead of a cost walk or a build that never ends.
MAX_WIDTH = 1 << 16
MAX_KERNEL = 63
MAX_DEPTH = 1024


def _label(kind):
    """A block kind for messages: the name, or a short repr of a non-name."""
    return kind if isinstance(kind, str) and len(kind) <= 40 else short_repr(
        kind, 40)


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
        """Build a block from a JSON / config dict, checking its keys (the
        values are checked by :func:`check_block`)."""
        if not isinstance(data, dict):
            raise StructureError(
                f'block {index}: expected a dict, got {type(data).__name__}')
        data = dict(data)
        if 'kind' not in data and 'class' in data:
            name = data.pop('class')
            if not isinstance(name, str) or name not in TINYNAS_CLASSES:
                raise StructureError(
                    f'block {index}: unknown TinyNAS class '
                    f'{short_repr(name)}; supported: '
                    f'{", ".join(TINYNAS_CLASSES)}')
            data['kind'] = TINYNAS_CLASSES[name]
            for key in _TINYNAS_IGNORED:
                data.pop(key, None)
        if 'kind' not in data:
            raise StructureError(
                f"block {index}: missing field 'kind' (one of "
                f'{", ".join(KINDS)})')
        # Keys from a TinyNAS literal may be numbers or tuples: no sorting.
        unknown = [key for key in data if key not in _KEYS]
        if unknown:
            raise StructureError(
                f'block {index}: unknown field {short_repr(unknown[0])}; '
                f'allowed fields: {", ".join(_KEYS)}')
        kind = _label(data['kind'])
        for key in ('in', 'out', 'k'):
            if key not in data:
                raise StructureError(
                    f"block {index} ({kind}): missing field '{key}'")
        if data['kind'] in BOTTLENECK_KINDS and 'btn' not in data:
            raise StructureError(
                f"block {index} ({kind}): missing field 'btn' (the "
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


def check_block(block, index=0):
    """Raise :class:`StructureError` for the first fault of one block.

    Numbers must be of their type: ``24.0``, ``'24'`` and ``true`` are not
    widths; NaN and infinity are refused everywhere."""
    kind = block.kind
    if not isinstance(kind, str):
        raise StructureError(
            f"block {index}: field 'kind' must be a block kind name (one of "
            f'{", ".join(KINDS)}), got {short_repr(kind)}')
    if kind not in KINDS:
        raise StructureError(
            f'block {index}: unknown block kind {short_repr(kind)}; choose '
            f'one of {", ".join(KINDS)}')
    where = f'block {index} ({kind})'
    widths = [('in', block.in_channels), ('out', block.out_channels)]
    if kind in BOTTLENECK_KINDS:
        widths.append(('btn', block.bottleneck))
    elif not (is_int(block.bottleneck) and block.bottleneck == 0):
        raise StructureError(
            f"{where}: field 'btn' only applies to btn and dwbtn blocks; "
            'remove it')
    for key, value in widths:
        if not is_int(value) or value < 1:
            raise StructureError(
                f"{where}: field '{key}' must be a positive integer width, "
                f'got {short_repr(value)}')
        if value > MAX_WIDTH:
            raise StructureError(
                f"{where}: field '{key}' is {value}, more than the "
                f'{MAX_WIDTH} channels a block may have')
    for key, value in (('k', block.kernel), ('kt', block.kernel_t)):
        if not is_int(value) or value < 1 or value % 2 == 0:
            raise StructureError(
                f"{where}: field '{key}' must be an odd positive kernel size "
                f'(1, 3, 5, ...), got {short_repr(value)}')
        if value > MAX_KERNEL:
            raise StructureError(
                f"{where}: field '{key}' is {value}, larger than the largest "
                f'kernel a block may have ({MAX_KERNEL})')
    if not is_int(block.stride) or block.stride not in (1, 2):
        raise StructureError(
            f"{where}: field 's' (spatial stride) must be 1 or 2, got "
            f'{short_repr(block.stride)}')
    if not is_int(block.depth) or block.depth < 1:
        raise StructureError(
            f"{where}: field 'L' (number of units) must be an integer >= 1, "
            f'got {short_repr(block.depth)}')
    if block.depth > MAX_DEPTH:
        raise StructureError(
            f"{where}: field 'L' is {block.depth}, more than the {MAX_DEPTH} "
            'units a block may have')
    se = block.se
    if not is_number(se) or not 0 <= se <= 1:
        raise StructureError(
            f"{where}: field 'se' (squeeze-excitation ratio) must be a number "
            f'in [0, 1], 0 for none, got {short_repr(se)}')
    act = block.act
    if act is not None and (not isinstance(act, str)
                            or act not in ACTIVATIONS):
        raise StructureError(
            f"{where}: field 'act' must be one of {', '.join(ACTIVATIONS)} "
            f'or null, got {short_repr(act)}')


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
                f"{source}: field 'format' is {short_repr(fmt)}, expected "
                f'{JSON_FORMAT!r}')
        version = data.get('version', JSON_VERSION)
        # type(...) is int: true and 1.0 are equal to 1 but are not versions
        if type(version) is not int or version != JSON_VERSION:
            raise StructureError(
                f"{source}: field 'version' is {short_repr(version)}; this "
                f'plugin reads version {JSON_VERSION}')
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


# A bracket, or a quoted string (skipped, so brackets in names do not count).
_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"|' r"'(?:[^'\\\n]|\\.)*'|[\[\]{}()]")
_NESTING_STEP = {'[': 1, '{': 1, '(': 1, ']': -1, '}': -1, ')': -1}


def _check_nesting(text, source):
    """Refuse a text nested deeper than :data:`MAX_NESTING` before a parser
    recurses into it (json and ast would raise RecursionError or
    MemoryError, or crash)."""
    depth = 0
    step = _NESTING_STEP.get
    for match in _TOKENS.finditer(text):
        change = step(match.group())
        if change is not None:
            depth += change
            if depth > MAX_NESTING:
                raise StructureError(
                    f'{source}: nested more than {MAX_NESTING} levels deep '
                    '(a structure file needs 4); not a structure file')


def _detail(error, limit=120):
    """A parser's error message on one short line."""
    text = ' '.join(str(error).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


def parse_structure(text, source='<string>', max_chars=MAX_STRUCTURE_BYTES):
    """Parse JSON or TinyNAS text (a Python literal, never ``eval``-ed).

    A text longer than ``max_chars`` or nested deeper than
    :data:`MAX_NESTING` is refused before it is parsed, and one that is not
    JSON is read as a literal only up to :data:`MAX_LITERAL_CHARS`."""
    if not isinstance(text, str):
        raise StructureError(
            f'{source}: expected the text of a structure file, got '
            f'{type(text).__name__}')
    if len(text) > max_chars:
        raise StructureError(
            f'{source}: {len(text)} characters, more than the {max_chars} a '
            'structure may have')
    if not text.strip():
        raise StructureError(
            f'{source}: empty; a structure file holds a JSON object '
            '{"format": "e3d-structure", "blocks": [...]} or a TinyNAS '
            'structure literal')
    _check_nesting(text, source)
    try:
        try:
            data = json.loads(text)
        except ValueError as e:
            if len(text) > MAX_LITERAL_CHARS:
                raise StructureError(
                    f'{source}: not JSON ({_detail(e)}), and at '
                    f'{len(text)} characters too long to be read as a '
                    f'TinyNAS structure literal (at most {MAX_LITERAL_CHARS})'
                ) from None
            try:
                data = ast.literal_eval(text.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError,
                    RecursionError) as e:
                raise StructureError(
                    f'{source}: neither JSON nor a TinyNAS structure literal '
                    f'({type(e).__name__}: {_detail(e)})') from None
        structure = Structure.from_dicts(_unwrap(data, source))
    except (RecursionError, MemoryError) as e:
        # the nesting check should make this unreachable; never a traceback
        raise StructureError(
            f'{source}: too large or too deeply nested to read '
            f'({type(e).__name__})') from None
    except StructureError as e:
        if str(e).startswith(source):
            raise
        raise StructureError(f'{source}: {e}') from None
    return structure


def read_structure_text(path, max_bytes=MAX_STRUCTURE_BYTES):
    """The text of structure file ``path``, refused with one line when the
    path is unusable (NUL byte, a directory or other non-regular file), the
    file is larger than ``max_bytes`` (checked before reading) or it is not
    UTF-8 (a byte-order mark is allowed)."""
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if '\x00' in path:
        raise StructureError(
            f'{short_repr(path, 300)}: a file path cannot contain a NUL byte')
    try:
        info = os.stat(path)
    except OSError as e:
        raise StructureError(
            f'{path}: cannot be read ({e.strerror or e})') from None
    if stat.S_ISDIR(info.st_mode):
        raise StructureError(
            f'{path}: is a directory; give the structure file (JSON or '
            'TinyNAS text) inside it')
    if not stat.S_ISREG(info.st_mode):
        raise StructureError(
            f'{path}: is not a regular file (a device, pipe or socket); give '
            'a structure file')
    too_big = (f'{path}: larger than the {max_bytes} bytes a structure file '
               'may have (max_bytes); a structure file takes a few kB')
    if info.st_size > max_bytes:
        raise StructureError(too_big)
    try:
        with open(path, 'rb') as f:
            # read one byte more than allowed: the file may have grown
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise StructureError(
            f'{path}: cannot be read ({e.strerror or e})') from None
    if len(data) > max_bytes:
        raise StructureError(too_big)
    try:
        return data.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        raise StructureError(
            f'{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset '
            f'{e.start}); save it as UTF-8') from None


def load_structure(source, max_bytes=MAX_STRUCTURE_BYTES):
    """Load a structure from a preset name, a JSON file or a TinyNAS file.

    ``source`` may also be a :class:`Structure`, a list of block dicts or a
    dict in the JSON format. A file larger than ``max_bytes`` is refused
    before it is read.
    """
    if isinstance(source, Structure):
        return source.validate()
    if isinstance(source, (list, tuple, dict)):
        return Structure.from_dicts(source)
    if not isinstance(source, (str, os.PathLike)):
        raise StructureError(
            'expected a preset name, a file path, or a list of blocks, got '
            f'{type(source).__name__}')
    if isinstance(source, str) and source in PRESETS:
        return get_preset(source)
    path = os.fspath(source)
    if isinstance(path, str) and '\x00' not in path and not osp.exists(path):
        raise StructureError(
            f"'{path}' is neither a preset ({', '.join(PRESETS)}) nor an "
            'existing structure file (JSON or TinyNAS text)')
    text = read_structure_text(path, max_bytes)
    return parse_structure(text, os.fsdecode(path), max_chars=max_bytes)


@functools.lru_cache(maxsize=None)
def _load_preset(name):
    return load_structure(preset_path(name))


def get_preset(name):
    """Return the :class:`Structure` of preset ``name`` (see
    :mod:`e3d_plugin.presets`)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise StructureError(
            f'unknown preset {short_repr(name)}; choose one of '
            f'{", ".join(PRESETS)}')
    return _load_preset(name)


def save_structure(structure, path):
    """Write ``structure`` as JSON to ``path`` (atomically: a temporary file
    renamed over ``path``, removed again if the write fails)."""
    structure = Structure.from_dicts(structure) if not isinstance(
        structure, Structure) else structure.validate()
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    text = structure.to_json(indent=2) + '\n'
    return atomic_write(path, lambda f: f.write(text))


def resolve_structure(arch=None, structure=None, structure_file=None):
    """Return the structure named by exactly one of the three arguments:
    ``arch`` (a preset name), ``structure`` (a list of block dicts, or a
    dict in the JSON format) or ``structure_file`` (a path)."""
    given = [name for name, value in (('arch', arch), ('structure', structure),
                                      ('structure_file', structure_file))
             if value is not None]
    if len(given) != 1:
        raise StructureError(
            'give exactly one of arch (a preset name), structure (a list of '
            f'blocks) or structure_file (a path); got {given or "none"}')
    if arch is not None:
        if not isinstance(arch, str) or arch not in PRESETS:
            raise StructureError(
                f'arch {short_repr(arch)} is not a preset; choose one of '
                f"{', '.join(PRESETS)}, or give structure / structure_file")
        return get_preset(arch)
    if structure is not None:
        if isinstance(structure, Structure):
            return structure.validate()
        if not isinstance(structure, (list, tuple, dict)):
            raise StructureError(
                'structure must be a list of block dicts, got '
                f'{short_repr(structure)}; for a preset give arch, for a '
                'file give structure_file')
        return Structure.from_dicts(structure)
    if not isinstance(structure_file, (str, os.PathLike)):
        raise StructureError(
            'structure_file must be a path (a string), got '
            f'{short_repr(structure_file)}')
    path = os.fspath(structure_file)
    if isinstance(path, str) and '\x00' not in path and not osp.exists(path):
        raise StructureError(
            f"structure_file '{structure_file}' does not exist")
    return parse_structure(read_structure_text(path), os.fsdecode(path))
