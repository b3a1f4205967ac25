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

Convs pad ``(kt // 2, k // 2, k // 2)`` with stride ``(1, s, s)``, so a stride
2 conv maps ``H`` to ``ceil(H / 2)``; the temporal length never changes.
"""
from typing import List, NamedTuple, Tuple, Union

from .structure import Structure, se_width

ImageSize = Union[int, Tuple[int, int]]


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


def _hw(image_size):
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = image_size
    return int(height), int(width)


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


def _block(block, frames, height, width):
    """Cost of a block at input ``(frames, height, width)``."""
    kind, cin, cout, k, kt, s, depth, btn, se, _ = block
    out_h = (height - 1) // s + 1
    out_w = (width - 1) // s + 1
    out_pixels = frames * out_h * out_w
    flops, params = _unit(kind, cin, cout, k, kt, btn, se,
                          frames * height * width, out_pixels)
    if depth > 1:
        rest_flops, rest_params = _unit(kind, cout, cout, k, kt, btn, se,
                                        out_pixels, out_pixels)
        flops += (depth - 1) * rest_flops
        params += (depth - 1) * rest_params
    return flops, params, out_h, out_w


def compute_cost(structure: Structure, image_size: ImageSize = 224,
                 frames: int = 16) -> Cost:
    """FLOPs, params and layers of ``structure`` for one clip (fast path)."""
    height, width = _hw(image_size)
    flops = params = layers = 0
    for block in structure:
        f, p, height, width = _block(block, frames, height, width)
        flops += f
        params += p
        layers += block.layers
    return Cost(flops, params, layers)


def analyze_cost(structure: Structure, image_size: ImageSize = 224,
                 frames: int = 16) -> CostReport:
    """Per-block costs with output shapes, and the totals."""
    height, width = _hw(image_size)
    rows = []
    for index, block in enumerate(structure):
        f, p, height, width = _block(block, frames, height, width)
        rows.append(
            BlockCost(index, block.kind,
                      (block.out_channels, frames, height, width), f, p,
                      block.layers))
    return CostReport((structure.in_channels, frames) + _hw(image_size), rows,
                      sum(r.flops for r in rows), sum(r.params for r in rows),
                      sum(r.layers for r in rows))


def output_shape(structure: Structure, image_size: ImageSize = 224,
                 frames: int = 16):
    """Shape ``(C, T, H, W)`` of the backbone output for one clip."""
    height, width = _hw(image_size)
    for block in structure:
        height = (height - 1) // block.stride + 1
        width = (width - 1) // block.stride + 1
    return structure.out_channels, frames, height, width
