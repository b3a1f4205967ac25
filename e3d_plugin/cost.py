"""FLOPs, parameters and depth of a structure, without building modules.

What is counted, for one clip of ``frames x H x W`` (batch 1):

* **FLOPs** are multiply-adds of the backbone's conv layers: for each conv,
  ``T_out * H_out * W_out * C_out * (C_in / groups) * kt * k * k``; the convs
  of squeeze-excitation modules count too (on their 1x1x1 pooled input).
  Biases, batch-norm, activations, pooling, the residual additions and the
  classification head are not counted. This is what
  ``mmengine.analysis.FlopAnalyzer`` reports for the ``conv`` operators of the
  built backbone (it has no ``linear`` operator to report).
* **Params** are every learnable parameter of the built backbone: conv weights
  (convs have no bias, except in SE modules), SE biases, and the weight and
  bias of every norm layer (2 per channel; running statistics are buffers).
* **Layers** are the convs on the main path: 1 per ``conv`` unit, 2 per
  ``res`` unit, 3 per ``btn`` / ``dwbtn`` unit (SE convs excluded), the depth
  the published E3D budgets use.

The sizes come from :func:`e3d_plugin.units.iter_units`, the walk over a
structure's units that the latency table and the search space use too: a
stride-2 conv maps ``H`` to ``ceil(H / 2)``
(:func:`~e3d_plugin.units.conv_output_size`); the temporal length never
changes. :func:`analyze_cost` sums the cost of every unit of that walk;
:func:`compute_cost`, which the search calls once per candidate, walks
block by block (:func:`~e3d_plugin.units.block_units`) and memoises each
block's result under ``(block, frames, height, width)``: a child shares
most blocks with its parent, so most blocks cost one dictionary look-up
(tests check that both agree on many random structures and odd clip sizes,
with the memo cold and warm).
"""
from typing import List, NamedTuple, Tuple, Union

from .structure import Structure, se_width
from .units import block_units, image_hw, iter_units

ImageSize = Union[int, Tuple[int, int]]

#: ``(height, width)`` of an image size (kept under its old name).
_hw = image_hw


class Cost(NamedTuple):
    """FLOPs (multiply-adds), parameters and conv layers of a structure."""

    flops: int
    params: int
    layers: int


class BlockCost(NamedTuple):
    """Cost of one block, with the shape ``(C, T, H, W)`` it outputs."""

    index: int
    kind: str
    out_shape: Tuple[int, int, int, int]
    flops: int
    params: int
    layers: int


class CostReport(NamedTuple):
    """Per-block costs and their totals for one clip size."""

    input_shape: Tuple[int, int, int, int]
    blocks: List[BlockCost]
    flops: int
    params: int
    layers: int


def _unit(kind, cin, cout, k, kt, btn, se, in_pixels, out_pixels):
    """FLOPs and params of one unit; ``*_pixels`` are ``T * H * W``."""
    kk = kt * k * k
    if kind == 'conv':
        return out_pixels * cout * cin * kk, cout * cin * kk + 2 * cout
    if kind == 'res':
        weights2 = cout * cout * kk
        flops = out_pixels * (cout * cin * kk + weights2)
        params = cout * cin * kk + weights2 + 4 * cout
        se_channels = cout
    else:
        mid = btn * btn * kk if kind == 'btn' else btn * kk
        flops = in_pixels * btn * cin + out_pixels * (mid + cout * btn)
        params = cin * btn + mid + btn * cout + 4 * btn + 2 * cout
        se_channels = btn
    if se:
        hidden = se_width(se_channels, se)
        flops += 2 * se_channels * hidden
        params += 2 * se_channels * hidden + hidden + se_channels
    return flops, params


def unit_cost(unit):
    """FLOPs and params of the ``unit.count`` units of a
    :class:`~e3d_plugin.units.Unit` record."""
    t, h, w = unit.in_size
    out_t, out_h, out_w = unit.out_size
    flops, params = _unit(unit.kind, unit.in_channels, unit.out_channels,
                          unit.kernel, unit.kernel_t, unit.bottleneck,
                          unit.se, t * h * w, out_t * out_h * out_w)
    return flops * unit.count, params * unit.count


def _block(block, frames, height, width):
    """``(flops, params, layers, out_height, out_width)`` of a block at input
    ``(frames, height, width)``: :func:`unit_cost` summed over its units
    from :func:`~e3d_plugin.units.block_units`."""
    flops = params = layers = 0
    units, height, width = block_units(block, frames, height, width)
    for unit in units:
        f, p = unit_cost(unit)
        flops += f
        params += p
        layers += unit.layers
    return flops, params, layers, height, width


# (block, frames, height, width) -> _block(...). A search's children share
# most blocks with their parents, so most look-ups hit; the limit bounds the
# memory of a long search.
_BLOCK_MEMO = {}
_MEMO_LIMIT = 1 << 15


def compute_cost(structure: Structure, image_size: ImageSize = 224,
                 frames: int = 16) -> Cost:
    """FLOPs, params and layers of ``structure`` for one clip.

    The search calls this once per candidate: block results are memoised
    (the same walk as :func:`analyze_cost`, whose totals it equals)."""
    height, width = image_hw(image_size)
    flops = params = layers = 0
    memo = _BLOCK_MEMO
    for block in structure:
        key = (block, frames, height, width)
        found = memo.get(key)
        if found is None:
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            found = memo[key] = _block(block, frames, height, width)
        f, p, n, height, width = found
        flops += f
        params += p
        layers += n
    return Cost(flops, params, layers)


def analyze_cost(structure: Structure, image_size: ImageSize = 224,
                 frames: int = 16) -> CostReport:
    """Per-block costs with output shapes, and the totals: the sum of
    :func:`unit_cost` over :func:`~e3d_plugin.units.iter_units`."""
    rows = []
    for unit in iter_units(structure, image_size, frames):
        flops, params = unit_cost(unit)
        if unit.unit_index == 0:
            rows.append(
                BlockCost(unit.block_index, unit.kind,
                          (unit.out_channels, ) + unit.out_size, flops,
                          params, unit.layers))
        else:
            row = rows[-1]
            rows[-1] = row._replace(flops=row.flops + flops,
                                    params=row.params + params,
                                    layers=row.layers + unit.layers)
    return CostReport((structure.in_channels, frames) + image_hw(image_size),
                      rows, sum(r.flops for r in rows),
                      sum(r.params for r in rows),
                      sum(r.layers for r in rows))


def output_shape(structure: Structure, image_size: ImageSize = 224,
                 frames: int = 16):
    """Shape ``(C, T, H, W)`` of the backbone output for one clip."""
    *_, last = iter_units(structure, image_size, frames)
    return (last.out_channels, ) + last.out_size
