"""The rules of a structure's units, each defined once.

A block of depth ``L`` is ``L`` units. Its first unit changes the width
(``in -> out``) and applies the block's spatial stride; the other ``L - 1``
units are identical to one another (``out -> out``, stride 1). Everything that
needs the units of a structure -- the cost model
(:mod:`e3d_plugin.cost`), the latency table's unit keys
(:mod:`e3d_plugin.nas.latency`) and the search space's kernel fitting
(:mod:`e3d_plugin.nas.space`) -- takes them from one pure walk,
:func:`iter_units`, which yields one :class:`Unit` record for the first unit
of every block and one, with ``count = L - 1``, for the rest.

Feature sizes follow the backbone: every conv pads ``k // 2``, so a stride
``s`` maps a size to ``ceil(size / s)`` (:func:`conv_output_size`); the
temporal length never changes. The STEntr-Score deliberately rounds the
other way (:func:`score_output_size`, integer division), because the
published reference scores are computed that way; see there.

This module imports only :mod:`e3d_plugin.checks`, so every other module
can import it (``structure`` and ``models.blocks`` included).
"""
from typing import Iterator, List, NamedTuple, Optional, Tuple

from .checks import check_int, image_hw

#: Block kinds, in the order messages list them.
KINDS = ('conv', 'res', 'btn', 'dwbtn')
#: Kinds whose units may add an identity shortcut.
RESIDUAL_KINDS = ('res', 'btn', 'dwbtn')
#: Kinds with a bottleneck width ``btn``.
BOTTLENECK_KINDS = ('btn', 'dwbtn')
#: Convs on the main path of one unit of each kind (SE convs excluded): the
#: "layers" of the published E3D budgets.
CONVS_PER_UNIT = {'conv': 1, 'res': 2, 'btn': 3, 'dwbtn': 3}
#: ``(kt, k, k)`` convs on the main path of one unit of each kind: each
#: widens the temporal receptive field by ``kt - 1`` frames.
TEMPORAL_CONVS_PER_UNIT = {'conv': 1, 'res': 2, 'btn': 1, 'dwbtn': 1}
#: A block's ``act`` name -> the mmcv activation config its units build.
#: Callers that hand a config to a builder should pass a copy.
ACT_CFGS = {
    'relu': dict(type='ReLU', inplace=True),
    'swish': dict(type='SiLU', inplace=True),
}
#: Activation names a block's ``act`` may take (``None``: the backbone's).
ACTIVATIONS = tuple(ACT_CFGS)

Size = Tuple[int, int, int]


def conv_output_size(size, stride):
    """Output size of a conv padding ``k // 2`` with ``stride``:
    ``ceil(size / stride)``, as the backbone computes it (e.g. 39 -> 20)."""
    return (size - 1) // stride + 1


def score_output_size(size, stride):
    """The feature size the STEntr-Score uses after a block of ``stride``:
    ``size // stride`` (e.g. 39 -> 19), *not* :func:`conv_output_size`.

    This is deliberate: the published reference scores of E3D-S / M / L
    (TinyNAS's ``compute_stentr``) divide with floor, and only this rounding
    reproduces them (E3D-L at 312 px passes through 39 px, where the two
    rules differ). The score is a ranking heuristic, not a shape
    computation, so matching the published numbers wins; do not "fix" it.
    """
    return size // stride


class Unit(NamedTuple):
    """One unit of a structure -- or ``count`` identical ones -- at its place
    in the network, as :func:`iter_units` yields it.

    Sizes are ``(T, H, W)``; ``act`` is the block's own activation (``None``:
    the backbone's ``act_cfg``).
    """

    block_index: int
    unit_index: int
    count: int
    kind: str
    in_channels: int
    out_channels: int
    kernel: int
    kernel_t: int
    stride: int
    bottleneck: int
    se: float
    act: Optional[str]
    in_size: Size
    out_size: Size

    @property
    def layers(self):
        """Main-path convs of the ``count`` units."""
        return CONVS_PER_UNIT[self.kind] * self.count


_new = tuple.__new__  # a Unit without NamedTuple's keyword-parsing __new__


def block_units(block, frames, height, width, block_index=0):
    """``([Unit, ...], out_height, out_width)`` of one block at input
    ``frames x height x width``: its first unit, and its other
    ``depth - 1`` units as one record with ``count = depth - 1``."""
    kind = block.kind
    cin = block.in_channels
    cout = block.out_channels
    k, kt, stride, depth = (block.kernel, block.kernel_t, block.stride,
                            block.depth)
    btn, se, act = int(block.bottleneck or 0), float(block.se or 0.0), \
        block.act
    out_h = conv_output_size(height, stride)
    out_w = conv_output_size(width, stride)
    out_size = (frames, out_h, out_w)
    units = [_new(Unit, (block_index, 0, 1, kind, cin, cout, k, kt, stride,
                         btn, se, act, (frames, height, width), out_size))]
    if depth > 1:
        units.append(_new(Unit, (block_index, 1, depth - 1, kind, cout, cout,
                                 k, kt, 1, btn, se, act, out_size,
                                 out_size)))
    return units, out_h, out_w


def iter_units(structure, image_size=224, frames=16) -> Iterator[Unit]:
    """Every :class:`Unit` of ``structure`` for one clip of ``frames x
    image_size``, in network order (a pure function of its arguments).

    The arguments are checked at the call, not at the first ``next``."""
    height, width = image_hw(image_size)
    frames = check_int('', 'frames', frames, low=1)
    return _walk(structure, frames, height, width)


def _walk(structure, frames, height, width):
    for index, block in enumerate(structure):
        units, height, width = block_units(block, frames, height, width,
                                           index)
        yield from units


def temporal_receptive_field(structure):
    """Frames of the clip that one output position of the backbone sees.

    Every conv pads ``kt // 2`` frames (a causal one ``kt - 1`` before) and
    no conv strides or dilates in time, so each ``(kt, k, k)`` conv widens
    the field by ``kt - 1``: the field is ``1 + sum(kt - 1)`` over the main
    path's convs (SE and shortcuts add nothing). A structure with ``kt = 1``
    everywhere has a field of 1 frame: it cannot see motion.
    """
    return 1 + sum((block.kernel_t - 1) * block.depth *
                   TEMPORAL_CONVS_PER_UNIT[block.kind] for block in structure)


def block_input_sizes(structure, image_size=224, frames=16) -> List[Size]:
    """The ``(T, H, W)`` each block of ``structure`` receives."""
    return [unit.in_size for unit in iter_units(structure, image_size, frames)
            if unit.unit_index == 0]


__all__ = [
    'KINDS', 'RESIDUAL_KINDS', 'BOTTLENECK_KINDS', 'CONVS_PER_UNIT',
    'ACT_CFGS', 'ACTIVATIONS', 'Unit', 'conv_output_size',
    'score_output_size', 'image_hw', 'iter_units', 'block_units',
    'block_input_sizes', 'TEMPORAL_CONVS_PER_UNIT', 'temporal_receptive_field'
]
