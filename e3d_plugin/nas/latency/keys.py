"""Unit keys: the shape of one timed unit, taken from the unit walk.

A unit's key is everything that decides its latency: kind, input and output
width, kernel, stride, bottleneck width, SE ratio, activation and input size
``(T, H, W)``. The keys of a structure are those of the
:class:`~e3d_plugin.units.Unit` records :func:`~e3d_plugin.units.iter_units`
yields (so the latency table sees the same sizes as the cost model), with a
block's own ``act`` resolved to the table's default where it has none. A
block of depth ``L`` costs its first unit plus ``L - 1`` times its inner
unit, which all share one key.
"""
from typing import NamedTuple

from ...units import block_units as _walk_block
from ...units import iter_units


class UnitKey(NamedTuple):
    """The shape of one timed unit (input sizes ``frames x height x width``).
    """

    kind: str
    in_channels: int
    out_channels: int
    kernel: int
    kernel_t: int
    stride: int
    bottleneck: int
    se: float
    act: str
    frames: int
    height: int
    width: int

    @classmethod
    def of(cls, unit, act='relu'):
        """The key of a :class:`~e3d_plugin.units.Unit`; ``act`` is the
        activation of units whose block has none."""
        frames, height, width = unit.in_size
        return cls(unit.kind, unit.in_channels, unit.out_channels,
                   unit.kernel, unit.kernel_t, unit.stride, unit.bottleneck,
                   unit.se, unit.act or act, frames, height, width)

    def text(self):
        """The key as written in the table file."""
        return '|'.join(str(v) for v in self)

    @classmethod
    def parse(cls, text):
        """Inverse of :meth:`text`."""
        fields = text.split('|')
        if len(fields) != len(cls._fields):
            raise ValueError(f'bad unit key {text!r}')
        (kind, cin, cout, k, kt, s, btn, se, act, t, h, w) = fields
        return cls(kind, int(cin), int(cout), int(k), int(kt), int(s),
                   int(btn), float(se), act, int(t), int(h), int(w))

    def describe(self):
        """A short human-readable form."""
        extra = f' btn {self.bottleneck}' if self.bottleneck else ''
        extra += f' se {self.se:g}' if self.se else ''
        return (f'{self.kind} {self.in_channels}->{self.out_channels} '
                f'{self.kernel_t}x{self.kernel}x{self.kernel} s{self.stride}'
                f'{extra} {self.act} at {self.frames}x{self.height}x'
                f'{self.width}')


def block_units(block, frames, height, width, act='relu'):
    """``([(UnitKey, count), ...], out_height, out_width)`` of one block at
    input ``frames x height x width``; ``act`` is the activation of blocks
    without their own."""
    units, height, width = _walk_block(block, frames, height, width)
    return [(UnitKey.of(unit, act), unit.count) for unit in units], height, \
        width


def structure_units(structure, image_size=224, frames=16, act='relu'):
    """Every ``(UnitKey, count)`` of ``structure`` for one clip, in order."""
    return [(UnitKey.of(unit, act), unit.count)
            for unit in iter_units(structure, image_size, frames)]


__all__ = ['UnitKey', 'block_units', 'structure_units']
