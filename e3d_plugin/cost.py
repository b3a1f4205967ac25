"""FLOPs, parameters, depth and memory of a structure, without building
modules.

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
* **max_feature** is the number of elements of the largest tensor that a
  layer of the backbone outputs (the reference implementation's
  ``max_feature``, in 3D): the largest of every conv, norm, activation,
  pooling and SE output and every unit's output; the input clip is not
  a layer's output. For a ``btn`` / ``dwbtn`` unit it is
  ``max(btn * T*H*W, C_out * T*H_out*W_out)`` (the first 1x1x1 conv runs
  before the stride), for the other kinds ``C_out * T*H_out*W_out``.
* **activation_bytes** is what one training step of the backbone keeps for
  its backward pass, float32: the bytes of every distinct storage autograd
  saves during the forward (what ``torch.autograd.graph.saved_tensors_hooks``
  sees, each storage once), the module's own parameters and buffers (the
  norms' running statistics) excluded. Measured op by op on the built
  modules (``tests/test_cost.py`` checks the sum against the hooks):

  - a conv saves its input (also the clip, which needs no gradient: the
    weight's gradient needs it), a depthwise
    :class:`~e3d_plugin.models.depthwise.DepthwiseConv3d` too;
  - a batch norm (training) saves its input and two statistics of
    ``C`` elements (mean and inverse std);
  - ReLU (in place) saves its result: the norm's output, which the next
    conv saves as its input, so it is one storage. Swish (SiLU) needs its
    input: in place it saves a copy of it, so a swish costs one more
    tensor of its size than a ReLU;
  - squeeze-excitation saves its pooled input (``C``), the hidden ReLU
    (``hidden``), the sigmoid gate (``C``) and, for the product with the
    gate, the full feature it scales: the product is a new tensor, so SE
    adds one feature of its width and ``2 * C + hidden``;
  - the residual addition (in place) and the global pooling save nothing;
    the 1x2x2 average pooling of a strided shortcut saves its input, the
    unit's input, which the first conv saves anyway.

  Per unit, with ``P_in = T*H*W`` and ``P_out = T*H_out*W_out`` and ``s``
  one for swish, zero for ReLU, the elements a unit saves besides its
  output are: ``conv`` ``C_in*P_in + (1+s)*C_out*P_out + 2*C_out``;
  ``res`` ``C_in*P_in + (3+2s)*C_out*P_out + 4*C_out``; ``btn`` /
  ``dwbtn`` ``C_in*P_in + (2+s)*btn*(P_in+P_out) + (1+s)*C_out*P_out +
  4*btn + 2*C_out``; SE adds ``C*P_out + 2*C + hidden`` (``C``: ``C_out``
  for ``res``, ``btn`` otherwise). A unit's output is saved as the next
  unit's input; the network's output only when a ReLU ends it. With
  ``with_cp`` (gradient checkpointing, as :class:`~e3d_plugin.models.E3D`
  builds it) a unit keeps only its input, and, in residual kinds, what
  the activation after the addition saves (a swish's copy); the first unit
  of the network runs unchecked, since the clip needs no gradient.
  Activations are the block's ``act`` or, where it is None, ``act`` of the
  functions below (the backbone's ``act_cfg``: ReLU by default). The
  count is of the backbone as :class:`~e3d_plugin.models.E3D` builds it by
  default (no frozen stages, norms in training mode, not causal: a causal
  backbone also keeps the padded copy of each temporal conv's input, 20 %
  more for E3D-M); the memory layout (``channels_last``) and
  ``fast_depthwise`` change nothing.
  A batch of ``N`` clips keeps ``N`` times the features; the statistics
  (``2 * C`` per norm, a few kB) are kept once.

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
from .units import ACTIVATIONS, block_units, image_hw, iter_units

ImageSize = Union[int, Tuple[int, int]]

#: ``(height, width)`` of an image size (kept under its old name).
_hw = image_hw

#: Bytes of one element: features are counted in float32.
BYTES_PER_ELEMENT = 4
#: The fields of :class:`Cost`, in the order :func:`cost_totals` returns
#: them.
COST_FIELDS = ('flops', 'params', 'layers', 'max_feature',
               'activation_bytes')


class _CostFields(NamedTuple):
    flops: int
    params: int
    layers: int


class Cost(_CostFields):
    """FLOPs (multiply-adds), parameters and conv layers of a structure,
    and its memory: ``max_feature`` (elements) and ``activation_bytes``.

    A ``Cost`` is the tuple ``(flops, params, layers)`` it has always been
    (``flops, params, layers = compute_cost(...)`` and comparisons with
    that tuple keep working); the two memory fields are attributes beside
    it, compared too when both sides are a ``Cost``."""

    def __new__(cls, flops, params, layers, max_feature=0,
                activation_bytes=0):
        self = tuple.__new__(cls, (flops, params, layers))
        self.max_feature = max_feature
        self.activation_bytes = activation_bytes
        return self

    def __eq__(self, other):
        if isinstance(other, Cost):
            return tuple.__eq__(self, other) and (
                self.max_feature, self.activation_bytes) == (
                    other.max_feature, other.activation_bytes)
        return tuple.__eq__(self, other)

    def __ne__(self, other):
        return not self == other

    __hash__ = tuple.__hash__

    def __repr__(self):
        return (f'Cost(flops={self.flops}, params={self.params}, layers='
                f'{self.layers}, max_feature={self.max_feature}, '
                f'activation_bytes={self.activation_bytes})')

    def __getnewargs__(self):
        return (self.flops, self.params, self.layers, self.max_feature,
                self.activation_bytes)

    def _asdict(self):
        return dict(flops=self.flops, params=self.params, layers=self.layers,
                    max_feature=self.max_feature,
                    activation_bytes=self.activation_bytes)

    def _replace(self, **changes):
        return Cost(**dict(self._asdict(), **changes))


class BlockCost(NamedTuple):
    """Cost of one block, with the shape ``(C, T, H, W)`` it outputs.

    ``activation_bytes`` counts what the block's units save for backward,
    their inputs included (so the first block holds the clip), and, for
    the last block, the network's output where its activation saves it:
    the rows sum to the total."""

    index: int
    kind: str
    out_shape: Tuple[int, int, int, int]
    flops: int
    params: int
    layers: int
    max_feature: int = 0
    activation_bytes: int = 0


class CostReport(NamedTuple):
    """Per-block costs and their totals for one clip size."""

    input_shape: Tuple[int, int, int, int]
    blocks: List[BlockCost]
    flops: int
    params: int
    layers: int
    max_feature: int = 0
    activation_bytes: int = 0


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


def _memory(kind, cin, cout, btn, se, swish, checkpointed, in_pixels,
            out_pixels):
    """``(max_feature, saved, output)`` of one unit, in elements: its
    largest layer output, what it saves for backward besides its output
    (its input included), and its output where its last op saves it (a
    ReLU). See the module docstring for the rules."""
    out = cout * out_pixels
    inputs = cin * in_pixels
    if kind == 'conv':
        if checkpointed:  # the checkpoint keeps the input, nothing else
            return out, inputs, 0
        return out, inputs + out * (1 + swish) + 2 * cout, 0 if swish else (
            out)
    if kind == 'res':
        feature = out
    else:
        feature = max(btn * in_pixels, out)
    if checkpointed:  # the input; the activation after the sum is outside
        return feature, inputs + swish * out, 0 if swish else out
    if kind == 'res':
        saved = inputs + (3 + 2 * swish) * out + 4 * cout
        se_channels = cout
    else:
        saved = (inputs + (2 + swish) * btn * (in_pixels + out_pixels) +
                 (1 + swish) * out + 4 * btn + 2 * cout)
        se_channels = btn
    if se:
        saved += se_channels * (out_pixels + 2) + se_width(se_channels, se)
    return feature, saved, 0 if swish else out


def unit_cost(unit):
    """FLOPs and params of the ``unit.count`` units of a
    :class:`~e3d_plugin.units.Unit` record."""
    t, h, w = unit.in_size
    out_t, out_h, out_w = unit.out_size
    flops, params = _unit(unit.kind, unit.in_channels, unit.out_channels,
                          unit.kernel, unit.kernel_t, unit.bottleneck,
                          unit.se, t * h * w, out_t * out_h * out_w)
    return flops * unit.count, params * unit.count


def unit_memory(unit, act='relu', checkpointed=False):
    """``(max_feature, saved, output)`` of the ``unit.count`` units of a
    :class:`~e3d_plugin.units.Unit` record, in elements: the largest layer
    output, what the units save for backward (their inputs included, their
    last output not) and the last unit's output where its activation saves
    it (the network's output counts only that). ``act`` is the activation
    of a unit whose ``act`` is None; ``checkpointed``: gradient
    checkpointing (``with_cp``). See the module docstring."""
    t, h, w = unit.in_size
    out_t, out_h, out_w = unit.out_size
    feature, saved, output = _memory(
        unit.kind, unit.in_channels, unit.out_channels, unit.bottleneck,
        unit.se, (unit.act or act) == 'swish', checkpointed, t * h * w,
        out_t * out_h * out_w)
    return feature, saved * unit.count, output


def _block(block, frames, height, width, act='relu', with_cp=False,
           first=False):
    """``(flops, params, layers, max_feature, saved, output, out_height,
    out_width)`` of a block at input ``(frames, height, width)``:
    :func:`unit_cost` and :func:`unit_memory` summed over its units from
    :func:`~e3d_plugin.units.block_units` (``first``: the network's first
    block, whose first unit is never checkpointed)."""
    flops = params = layers = feature = saved = output = 0
    units, height, width = block_units(block, frames, height, width)
    for unit in units:
        f, p = unit_cost(unit)
        flops += f
        params += p
        layers += unit.layers
        m, s, output = unit_memory(
            unit, act, with_cp and not (first and unit.unit_index == 0))
        feature = max(feature, m)
        saved += s
    return flops, params, layers, feature, saved, output, height, width


# (block, frames, height, width) -> _block(...) with the default options
# (ReLU, no checkpointing). A search's children share most blocks with
# their parents, so most look-ups hit; the limit bounds the memory of a
# long search. Other options have memos of their own (_OPTION_MEMOS).
_BLOCK_MEMO = {}
_OPTION_MEMOS = {}
_MEMO_LIMIT = 1 << 15


def _check_options(act, with_cp):
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise ValueError(
            f"act must be one of {', '.join(ACTIVATIONS)} (the activation of "
            f'blocks without their own), got {act!r}')
    if not isinstance(with_cp, bool):
        raise TypeError(f'with_cp must be True or False, got {with_cp!r}')


def cost_totals(structure: Structure, image_size: ImageSize = 224,
                frames: int = 16, act: str = 'relu', with_cp: bool = False):
    """The fields of :func:`compute_cost` as a plain tuple ``(flops,
    params, layers, max_feature, activation_bytes)``, for hot loops (the
    search's)."""
    height, width = image_hw(image_size)
    if act == 'relu' and with_cp is False:
        memo = _BLOCK_MEMO
    else:
        _check_options(act, with_cp)
        memo = _OPTION_MEMOS.setdefault((act, with_cp), {})
    flops = params = layers = feature = saved = output = 0
    first = with_cp
    for block in structure:
        if first:  # its first unit runs unchecked: not the memo's blocks
            found = _block(block, frames, height, width, act, with_cp, True)
            first = False
        else:
            key = (block, frames, height, width)
            found = memo.get(key)
            if found is None:
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                found = memo[key] = _block(block, frames, height, width, act,
                                           with_cp)
        f, p, n, m, s, output, height, width = found
        flops += f
        params += p
        layers += n
        if m > feature:
            feature = m
        saved += s
    return (flops, params, layers, feature,
            (saved + output) * BYTES_PER_ELEMENT)


def compute_cost(structure: Structure, image_size: ImageSize = 224,
                 frames: int = 16, act: str = 'relu',
                 with_cp: bool = False) -> Cost:
    """FLOPs, params, layers, ``max_feature`` and ``activation_bytes`` of
    ``structure`` for one clip; ``act`` is the activation of blocks without
    their own (the backbone's ``act_cfg``), ``with_cp`` the backbone's
    gradient checkpointing (both change only ``activation_bytes``).

    The search calls this once per candidate: block results are memoised
    (the same walk as :func:`analyze_cost`, whose totals it equals)."""
    return Cost(*cost_totals(structure, image_size, frames, act, with_cp))


def analyze_cost(structure: Structure, image_size: ImageSize = 224,
                 frames: int = 16, act: str = 'relu',
                 with_cp: bool = False) -> CostReport:
    """Per-block costs with output shapes, and the totals: the sum of
    :func:`unit_cost` and :func:`unit_memory` over
    :func:`~e3d_plugin.units.iter_units` (``act`` and ``with_cp`` as in
    :func:`compute_cost`)."""
    _check_options(act, with_cp)
    rows = []
    output = 0
    for unit in iter_units(structure, image_size, frames):
        flops, params = unit_cost(unit)
        first = unit.block_index == 0 and unit.unit_index == 0
        feature, saved, output = unit_memory(unit, act, with_cp and not first)
        if unit.unit_index == 0:
            rows.append(
                BlockCost(unit.block_index, unit.kind,
                          (unit.out_channels, ) + unit.out_size, flops,
                          params, unit.layers, feature, saved))
        else:
            row = rows[-1]
            rows[-1] = row._replace(
                flops=row.flops + flops, params=row.params + params,
                layers=row.layers + unit.layers,
                max_feature=max(row.max_feature, feature),
                activation_bytes=row.activation_bytes + saved)
    # elements to bytes; the network's output where its last op saves it
    rows = [row._replace(activation_bytes=row.activation_bytes *
                         BYTES_PER_ELEMENT) for row in rows]
    rows[-1] = rows[-1]._replace(activation_bytes=rows[-1].activation_bytes +
                                 output * BYTES_PER_ELEMENT)
    return CostReport((structure.in_channels, frames) + image_hw(image_size),
                      rows, sum(r.flops for r in rows),
                      sum(r.params for r in rows),
                      sum(r.layers for r in rows),
                      max(r.max_feature for r in rows),
                      sum(r.activation_bytes for r in rows))


def output_shape(structure: Structure, image_size: ImageSize = 224,
                 frames: int = 16):
    """Shape ``(C, T, H, W)`` of the backbone output for one clip."""
    *_, last = iter_units(structure, image_size, frames)
    return (last.out_channels, ) + last.out_size


__all__ = ['Cost', 'BlockCost', 'CostReport', 'BYTES_PER_ELEMENT',
           'COST_FIELDS',
           'compute_cost', 'cost_totals', 'analyze_cost', 'unit_cost',
           'unit_memory', 'output_shape']
