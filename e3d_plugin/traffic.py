"""Bytes one step of a 3D CNN must move through memory, and the time that
takes at a memory bandwidth.

A 3D CNN with depthwise convs does few multiply-adds per byte it touches:
its step time is set by memory traffic rather than by FLOPs. This module
counts that traffic, in two ways that follow the same rules:

* :func:`structure_traffic` from an E3D structure alone (the units of
  :func:`e3d_plugin.units.iter_units`, built as
  :mod:`e3d_plugin.models.blocks` builds them), without building modules;
* :func:`module_traffic` from any ``nn.Module``, by hooks on its leaf
  modules during one forward on the ``meta`` device (no memory, no
  compute: parameters and buffers are swapped for ``meta`` stand-ins with
  :func:`torch.func.functional_call`, the module itself is not copied or
  changed), plus the element-wise sums and products (``+ - * /``) it
  computes outside leaf modules (a residual addition, the product of a
  squeeze-excitation gate), seen by a ``TorchFunctionMode``. A leaf
  module's call is one op whatever it runs inside (mmcv's ``Swish``,
  ``x * sigmoid(x)``, is one activation); other functions called outside
  leaf modules (views, ``torch.cat``, ``mean``, padding) are not counted.
  It counts
  e.g. mmaction2's X3D, which has no E3D structure; on an E3D backbone it
  equals :func:`structure_traffic` exactly (``tests/test_traffic.py``).

The model of the traffic
------------------------

A step is a sequence of ops; every op's operands cross DRAM exactly once
(no fusion, no cache reuse between ops):

* **forward**: each op reads its inputs and its parameters and writes its
  outputs. An in-place activation reads and writes its tensor once each,
  the same bytes as out of place.
* **backward** (``mode='train'``; only for an op whose output needs a
  gradient): each op reads the gradient of its outputs and what it saved,
  and writes the gradient of every input that needs one and of every
  parameter that requires one. Saved: an op with parameters (conv, linear,
  norm) its inputs and its parameters; an activation one tensor of its
  output's size (its result or its input); a product (``x * gate``) both
  factors; a max pooling its indices (8 bytes per output element); average
  pooling, a sum and a copy-free identity nothing. (A sum's backward
  writes the gradient of each input, where autograd passes the output's
  on and instead adds up the two gradients of the shortcut's input: the
  same bytes for an identity shortcut, fewer for a pooled one.)
* **update** (``mode='train'``): SGD with momentum reads each trained
  parameter, its gradient and its momentum buffer and writes the parameter
  and the buffer: ``5 x 4`` bytes per parameter.

Activations (inputs, outputs, their gradients) take ``element_bytes`` per
element (4 for float32, 2 for float16 / bfloat16 autocast), those of
depthwise convs ``depthwise_bytes`` where given (4 under autocast with
``E3D(depthwise_fp32=True)``: then each of their operands is also cast, a
read of one size and a write of the other per element); parameters and
their gradients are float32 (:data:`PARAM_BYTES`), also under autocast
(its casts of the weights to half precision are not counted: a few MB per
step). Not counted either: the norms' running statistics and the saved
per-channel statistics (a few kB), the loss and its gradient outside the
backbone, the copy an in-place swish keeps for backward, the recomputed
forward of gradient checkpointing (``with_cp``), a causal backbone's padded
copies, and what an op reads more than once inside its kernel.

For unfused, op-by-op (eager) execution on tensors larger than the caches,
this is a lower bound of the DRAM traffic, so ``bytes / bandwidth``
(:func:`time_floor`) is a floor of the step time: a step at the floor
reaches 100 % of the memory-bandwidth limit. Tensors that stay in a large
last-level cache (an H200's L2 holds 50 MB: the late stages' features at
small batches) can move fewer DRAM bytes than counted; a compiler that
fuses ops moves fewer too (the count is then the eager reference, not a
floor of the compiled step).

Per-kind totals (:attr:`Traffic.by_kind`, :data:`KINDS`): ``conv`` (dense
convs, 1x1x1 ones and squeeze-excitation's included, and linear layers),
``depthwise`` (convs with ``groups == in_channels > 1``), ``norm_act``
(norms and activations), ``other`` (pooling, sums, products, other leaf
modules) and ``update`` (the optimizer). An E3D unit's ops are those of
:class:`~e3d_plugin.models.blocks.ConvUnit` / ``ResidualUnit``: conv-norm
(-act) per ConvModule; squeeze-excitation as a global average pooling,
1x1x1 conv, ReLU, 1x1x1 conv, sigmoid and the product with the gate; the
shortcut (where the width does not change) as an in-place sum, after a
1x2x2 average pooling in a strided unit; the activation after it.

Activation bytes scale with the batch, parameter bytes do not
(:attr:`Traffic.weight_bytes` is the batch-independent part).
"""
import contextlib
import numbers
from typing import Dict, NamedTuple, Tuple

from .checks import check_int, image_hw, short_repr
from .units import iter_units

#: Bytes of one parameter or parameter gradient (float32).
PARAM_BYTES = 4
#: Bytes of one max-pooling index (int64).
INDEX_BYTES = 8
#: Element sizes of activations that are accepted (float32: 4, float16 /
#: bfloat16: 2; 1 and 8 for int8 and float64).
ELEMENT_BYTES = (1, 2, 4, 8)
#: What one step does: forward only, or forward + backward + SGD update.
MODES = ('infer', 'train')
#: The kinds of :attr:`Traffic.by_kind`, in the order reports list them.
KINDS = ('conv', 'depthwise', 'norm_act', 'other', 'update')
#: Tensor accesses of one SGD-with-momentum update per parameter: read the
#: parameter, its gradient and its momentum buffer, write the parameter
#: and the buffer.
SGD_ACCESSES = 5

# How an op's backward reads (see the module docstring).
WEIGHTED = 'weighted'  # saves its inputs and parameters
ACTIVATION = 'activation'  # saves one tensor of its output's size
PRODUCT = 'product'  # saves both factors
SUM = 'sum'  # saves nothing
POOL = 'pool'  # saves nothing
MAXPOOL = 'maxpool'  # saves int64 indices of its output's size
RULES = (WEIGHTED, ACTIVATION, PRODUCT, SUM, POOL, MAXPOOL)


class Op(NamedTuple):
    """One op of a step, by the sizes of its operands (elements).

    ``inputs``: ``(elements, needs_grad)`` per activation input;
    ``outputs``: elements per output; ``params``: elements of its
    parameters, ``grad_params`` of those that require a gradient."""

    kind: str
    rule: str
    inputs: Tuple[Tuple[int, bool], ...]
    outputs: Tuple[int, ...]
    params: int = 0
    grad_params: int = 0


def op_bytes(op, element_bytes=4, train=True, depthwise_bytes=None):
    """``(forward, backward)`` bytes of one :class:`Op` under the rules of
    the module docstring (``backward`` is 0 unless ``train``).
    ``depthwise_bytes``: the element size a ``depthwise`` op computes in
    when it differs from ``element_bytes`` (``E3D(depthwise_fp32=True)``
    under autocast), with the casts of its operands counted."""
    if (op.kind == 'depthwise' and depthwise_bytes is not None
            and depthwise_bytes != element_bytes):
        forward, backward = op_bytes(op, depthwise_bytes, train)
        # each cast reads one size and writes the other: the inputs up and
        # the outputs down; in backward the outputs' gradients up and the
        # inputs' gradients down
        cast = element_bytes + depthwise_bytes
        forward += cast * (sum(n for n, _ in op.inputs) + sum(op.outputs))
        if backward:
            backward += cast * (sum(op.outputs) +
                                sum(n for n, needs in op.inputs if needs))
        return forward, backward
    e = element_bytes
    x = sum(n for n, _ in op.inputs)
    y = sum(op.outputs)
    forward = e * (x + y) + PARAM_BYTES * op.params
    grad_x = sum(n for n, needs in op.inputs if needs)
    if not train or not (grad_x or op.grad_params):
        return forward, 0
    backward = e * (y + grad_x) + PARAM_BYTES * op.grad_params
    if op.rule == WEIGHTED:
        backward += e * x + PARAM_BYTES * op.params
    elif op.rule == ACTIVATION:
        backward += e * y
    elif op.rule == PRODUCT:
        backward += e * x
    elif op.rule == MAXPOOL:
        backward += INDEX_BYTES * y
    return forward, backward


class Traffic(NamedTuple):
    """Bytes one step moves: ``forward``, ``backward`` and ``update`` (the
    optimizer), ``by_kind`` (:data:`KINDS` -> bytes, summing to
    :attr:`total`), ``ops`` (forward ops counted) and ``weight_bytes`` (the
    part for parameters, their gradients and the optimizer's state, which
    does not grow with the batch)."""

    forward: int
    backward: int
    update: int
    by_kind: Dict[str, int]
    ops: int
    weight_bytes: int

    @property
    def total(self):
        """Bytes of the whole step."""
        return self.forward + self.backward + self.update

    def as_dict(self):
        """The figures as a JSON-ready dict (``total`` included)."""
        return dict(total=self.total, forward=self.forward,
                    backward=self.backward, update=self.update,
                    by_kind=dict(self.by_kind), ops=self.ops,
                    weight_bytes=self.weight_bytes)


def time_floor(total_bytes, bandwidth_gbs):
    """Seconds to move ``total_bytes`` at ``bandwidth_gbs`` GB/s
    (10**9 bytes per second): the floor of a step's time."""
    if not isinstance(bandwidth_gbs, numbers.Real) or isinstance(
            bandwidth_gbs, bool) or not bandwidth_gbs > 0 or (
                bandwidth_gbs == float('inf')):
        raise ValueError('time_floor: bandwidth_gbs must be a finite '
                         f'positive number, got {short_repr(bandwidth_gbs)}')
    return total_bytes / (bandwidth_gbs * 1e9)


def _check(owner, element_bytes, mode, depthwise_bytes=None):
    sizes = [('element_bytes', element_bytes)]
    if depthwise_bytes is not None:  # None: as element_bytes
        sizes.append(('depthwise_bytes', depthwise_bytes))
    for name, value in sizes:
        if isinstance(value, bool) or value not in ELEMENT_BYTES:
            raise ValueError(
                f'{owner}: {name} must be one of '
                f'{", ".join(map(str, ELEMENT_BYTES))} (4 for float32, 2 '
                f'for float16 / bfloat16), got {short_repr(value)}')
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f'{owner}: mode must be one of {", ".join(MODES)}, '
                         f'got {short_repr(mode)}')


def _total(ops, trained_params, element_bytes, train, depthwise_bytes=None):
    """:class:`Traffic` of ``(op, count)`` pairs; ``trained_params``:
    elements of the parameters the optimizer updates."""
    by_kind = dict.fromkeys(KINDS, 0)
    forward = backward = count = weight = 0
    for op, times in ops:
        f, b = op_bytes(op, element_bytes, train, depthwise_bytes)
        forward += f * times
        backward += b * times
        by_kind[op.kind] += (f + b) * times
        count += times
        weight += PARAM_BYTES * times * (op.params + (
            op.grad_params + (op.params if op.rule == WEIGHTED else 0)
            if b else 0))
    update = SGD_ACCESSES * PARAM_BYTES * trained_params if train else 0
    by_kind['update'] = update
    return Traffic(forward, backward, update, by_kind, count, weight + update)


# ---------------------------------------------------------------------------
# From a structure


def _conv_norm(ops, cin, cout, pixels_in, pixels_out, weights, depthwise,
               act, in_grad=True):
    """A ConvModule: conv, norm and (``act``) activation."""
    ops.append(Op('depthwise' if depthwise else 'conv', WEIGHTED,
                  ((cin * pixels_in, in_grad), ), (cout * pixels_out, ),
                  weights, weights))
    out = cout * pixels_out
    ops.append(Op('norm_act', WEIGHTED, ((out, True), ), (out, ), 2 * cout,
                  2 * cout))
    if act:
        ops.append(Op('norm_act', ACTIVATION, ((out, True), ), (out, )))


def _squeeze_excitation(ops, channels, ratio, batch, pixels):
    """Global pooling, 1x1x1 conv, ReLU, 1x1x1 conv, sigmoid, product."""
    from .structure import se_width
    hidden = se_width(channels, ratio)
    c, h = batch * channels, batch * hidden
    ops.append(Op('other', POOL, ((channels * pixels, True), ), (c, )))
    ops.append(Op('conv', WEIGHTED, ((c, True), ), (h, ),
                  channels * hidden + hidden, channels * hidden + hidden))
    ops.append(Op('norm_act', ACTIVATION, ((h, True), ), (h, )))
    ops.append(Op('conv', WEIGHTED, ((h, True), ), (c, ),
                  hidden * channels + channels, hidden * channels + channels))
    ops.append(Op('norm_act', ACTIVATION, ((c, True), ), (c, )))
    ops.append(Op('other', PRODUCT, ((channels * pixels, True), (c, True)),
                  (channels * pixels, )))


def unit_ops(unit, batch=1, first=False):
    """The :class:`Op` list of one unit of a
    :class:`~e3d_plugin.units.Unit` record (``unit.count`` of them run),
    for ``batch`` clips; ``first``: the network's first unit, whose input
    (the clip) needs no gradient."""
    t, h, w = unit.in_size
    out_t, out_h, out_w = unit.out_size
    p_in, p_out = batch * t * h * w, batch * out_t * out_h * out_w
    cin, cout, btn = unit.in_channels, unit.out_channels, unit.bottleneck
    kk = unit.kernel_t * unit.kernel * unit.kernel
    ops = []
    if unit.kind == 'conv':
        _conv_norm(ops, cin, cout, p_in, p_out, cout * cin * kk, False, True,
                   not first)
        return ops
    if unit.kind == 'res':
        _conv_norm(ops, cin, cout, p_in, p_out, cout * cin * kk, False, True,
                   not first)
        _conv_norm(ops, cout, cout, p_out, p_out, cout * cout * kk, False,
                   False)
        if unit.se:
            _squeeze_excitation(ops, cout, unit.se, batch, p_out)
    else:
        _conv_norm(ops, cin, btn, p_in, p_in, btn * cin, False, True,
                   not first)
        depthwise = unit.kind == 'dwbtn'
        _conv_norm(ops, btn, btn, p_in, p_out,
                   btn * kk if depthwise else btn * btn * kk,
                   depthwise and btn > 1, not unit.se)
        if unit.se:
            _squeeze_excitation(ops, btn, unit.se, batch, p_out)
            ops.append(Op('norm_act', ACTIVATION, ((btn * p_out, True), ),
                          (btn * p_out, )))
        _conv_norm(ops, btn, cout, p_out, p_out, cout * btn, False, False)
    out = cout * p_out
    if cin == cout:  # the identity shortcut, pooled when strided
        if unit.stride == 2:
            ops.append(Op('other', POOL, ((cin * p_in, not first), ),
                          (out, )))
        ops.append(Op('other', SUM, ((out, True), (out, not first)),
                      (out, )))
    ops.append(Op('norm_act', ACTIVATION, ((out, True), ), (out, )))
    return ops


def structure_ops(structure, image_size=224, frames=16, batch=1):
    """``[(Op, count), ...]`` of one forward of ``structure`` for ``batch``
    clips of ``frames x image_size``, in network order."""
    batch = check_int('structure_ops', 'batch', batch, low=1)
    ops = []
    for unit in iter_units(structure, image_size, frames):
        first = unit.block_index == 0 and unit.unit_index == 0
        ops.extend((op, unit.count) for op in unit_ops(unit, batch, first))
    return ops


def structure_traffic(structure, image_size=224, frames=16, batch=1,
                      element_bytes=4, mode='train',
                      depthwise_bytes=None) -> Traffic:
    """Bytes one step of the E3D backbone of ``structure`` (a
    :class:`~e3d_plugin.structure.Structure`, a preset name or a list of
    block dicts) moves for ``batch`` clips of ``frames x image_size``
    (``image_size``: an int or ``(height, width)``), activations of
    ``element_bytes`` bytes, ``mode`` ``'infer'`` (forward) or ``'train'``
    (forward, backward, SGD update). The backbone as
    :class:`~e3d_plugin.models.E3D` builds it by default (every block, no
    frozen stage); see the module docstring for what is counted.
    ``depthwise_bytes``: see :func:`op_bytes` (e.g. 4 with ``element_bytes``
    2 for ``E3D(depthwise_fp32=True)`` under float16 autocast)."""
    from .structure import Structure, load_structure
    owner = 'structure_traffic'
    _check(owner, element_bytes, mode, depthwise_bytes)
    batch = check_int(owner, 'batch', batch, low=1)
    frames = check_int(owner, 'frames', frames, low=1)
    image_hw(image_size, owner)
    if not isinstance(structure, Structure):
        structure = load_structure(structure)
    ops = structure_ops(structure, image_size, frames, batch)
    params = sum(op.params * count for op, count in ops)
    return _total(ops, params, element_bytes, mode == 'train',
                  depthwise_bytes)


# ---------------------------------------------------------------------------
# From a module, by hooks

#: Names (``func.__name__``) of the element-wise arithmetic counted when a
#: module computes it outside its leaf modules (sums, then products).
_SUMS = frozenset(
    ('add', 'add_', 'sub', 'sub_', 'subtract', '__add__', '__radd__',
     '__iadd__', '__sub__', '__rsub__', '__isub__'))
_PRODUCTS = frozenset(
    ('mul', 'mul_', 'multiply', 'div', 'div_', 'divide', 'true_divide',
     '__mul__', '__rmul__', '__imul__', '__truediv__', '__rtruediv__',
     '__itruediv__', '__div__', '__idiv__'))
#: Class names of activations that are not in ``torch.nn`` (mmcv's).
_ACTIVATION_NAMES = frozenset(('Swish', 'HSwish', 'HSigmoid', 'Clamp'))


def _tensors(value, out):
    """Append every tensor in ``value`` (nested lists, tuples, dicts)."""
    import torch
    if isinstance(value, torch.Tensor):
        out.append(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _tensors(item, out)
    elif isinstance(value, dict):
        for item in value.values():
            _tensors(item, out)
    return out


def _activation_types():
    import torch.nn as nn
    names = ('ReLU', 'ReLU6', 'SiLU', 'Sigmoid', 'Tanh', 'GELU', 'Hardswish',
             'Hardsigmoid', 'Hardtanh', 'LeakyReLU', 'ELU', 'SELU', 'CELU',
             'Mish', 'Softplus', 'Softsign', 'Tanhshrink', 'Threshold',
             'LogSigmoid', 'RReLU', 'GLU')
    return tuple(getattr(nn, n) for n in names if hasattr(nn, n))


def _classify(module):
    """``(kind, rule)`` of a leaf module, or None for an identity."""
    import torch.nn as nn
    from torch.nn.modules.batchnorm import _NormBase
    from torch.nn.modules.pooling import (_AdaptiveMaxPoolNd, _MaxPoolNd)
    if isinstance(module, nn.modules.conv._ConvNd):
        depthwise = module.in_channels > 1 and (
            module.groups == module.in_channels)
        return ('depthwise' if depthwise else 'conv'), WEIGHTED
    if isinstance(module, nn.Linear):
        return 'conv', WEIGHTED
    if isinstance(module, (_NormBase, nn.GroupNorm, nn.LayerNorm,
                           nn.LocalResponseNorm)):
        return 'norm_act', WEIGHTED
    if isinstance(module, _activation_types()) or (
            type(module).__name__ in _ACTIVATION_NAMES):
        return 'norm_act', ACTIVATION
    if any(True for _ in module.parameters(recurse=False)):
        return 'other', WEIGHTED
    if isinstance(module, (_MaxPoolNd, _AdaptiveMaxPoolNd)):
        return 'other', MAXPOOL
    if isinstance(module, (nn.Identity, nn.Flatten, nn.Unflatten)):
        return None
    return 'other', POOL


class _Recorder:
    """Leaf-module hooks and a torch-function mode that turn one forward
    into :class:`Op` records."""

    def __init__(self):
        self.ops = []
        self.pending = []  # inputs of the leaf calls under way
        self.trained = {}  # id -> elements of the trained parameters seen

    def before(self, module, args, kwargs):
        inputs = _tensors(kwargs, _tensors(args, []))
        self.pending.append([(t.numel(), t.requires_grad) for t in inputs])

    def after(self, module, args, kwargs, output):
        inputs = self.pending.pop()
        found = _classify(module)
        if found is None:
            return
        kind, rule = found
        outputs = _tensors(output, [])
        params = grad = 0
        for p in module.parameters(recurse=False):
            params += p.numel()
            if p.requires_grad:
                grad += p.numel()
                self.trained[id(p)] = p.numel()
        if rule == ACTIVATION:
            # an element-wise map: the first input (an in-place one returns
            # it), and its result
            inputs = inputs[:1]
            outputs = outputs[:1]
        self.ops.append(Op(kind, rule, tuple(inputs),
                           tuple(t.numel() for t in outputs), params, grad))

    def function(self, name, operands, result):
        """An element-wise sum or product (``name``) computed outside leaf
        modules: ``operands`` are ``(elements, needs_grad)`` of its tensor
        operands before the call, ``result`` its result."""
        import torch
        if operands and isinstance(result, torch.Tensor):
            self.ops.append(Op('other', SUM if name in _SUMS else PRODUCT,
                               tuple(operands), (result.numel(), )))


def _function_mode(recorder):
    import torch
    from torch.overrides import TorchFunctionMode

    class Arithmetic(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, '__name__', '')
            # inside a leaf module the leaf's call counts it
            if recorder.pending or (name not in _SUMS
                                    and name not in _PRODUCTS):
                return func(*args, **kwargs)
            # the operands' sizes and whether they need a gradient, read
            # before an in-place op changes them
            operands = [(a.numel(), a.requires_grad)
                        for a in list(args) + list(kwargs.values())
                        if isinstance(a, torch.Tensor)]
            result = func(*args, **kwargs)
            recorder.function(name, operands, result)
            return result

    return Arithmetic()


def module_ops(model, input_shape, mode='train'):
    """``[(Op, 1), ...]`` of one forward of ``model`` on an input of
    ``input_shape`` (e.g. ``(N, C, T, H, W)``), run on the ``meta`` device
    in train mode with gradients (``mode='train'``) or in eval mode
    without (``'infer'``); the model's own tensors and modes are left as
    they were. Returns the ops and the elements of the parameters that the
    forward used and that require a gradient."""
    import torch
    from torch.func import functional_call

    owner = 'module_traffic'
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f'{owner}: model must be a torch.nn.Module, got '
                         f'{type(model).__name__}')
    if not isinstance(input_shape, (list, tuple)) or not input_shape:
        raise ValueError(f'{owner}: input_shape must be a non-empty tuple of '
                         f'positive integers, got {short_repr(input_shape)}')
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
               for s in input_shape):
        raise ValueError(f'{owner}: input_shape must be a non-empty tuple of '
                         f'positive integers, got {short_repr(input_shape)}')
    shape = tuple(input_shape)
    train = mode == 'train'
    meta = {name: torch.empty_like(p, device='meta').requires_grad_(
        p.requires_grad) for name, p in model.named_parameters()}
    meta.update({name: torch.empty_like(b, device='meta')
                 for name, b in model.named_buffers()})
    recorder = _Recorder()
    handles = []
    modes = {m: m.training for m in model.modules()}
    try:
        for module in model.modules():
            if next(module.children(), None) is None:
                handles.append(module.register_forward_pre_hook(
                    recorder.before, with_kwargs=True))
                handles.append(module.register_forward_hook(
                    recorder.after, with_kwargs=True))
        model.train(train)
        x = torch.empty(shape, device='meta')
        with torch.set_grad_enabled(train), _function_mode(recorder):
            functional_call(model, meta, (x, ))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return ([(op, 1) for op in recorder.ops],
            sum(recorder.trained.values()))


def module_traffic(model, input_shape, element_bytes=4, mode='train',
                   depthwise_bytes=None) -> Traffic:
    """Bytes one step of ``model`` (any ``nn.Module`` taking one tensor)
    moves for an input of ``input_shape`` (batch first, e.g. ``(8, 3, 16,
    224, 224)``), activations of ``element_bytes`` bytes, ``mode``
    ``'infer'`` or ``'train'``: :func:`module_ops` (one forward on the
    ``meta`` device, hooks on the leaf modules) under the rules of the
    module docstring. Parameters that require no gradient (frozen stages)
    get none and are not updated. ``depthwise_bytes``: see
    :func:`op_bytes`."""
    _check('module_traffic', element_bytes, mode, depthwise_bytes)
    ops, trained = module_ops(model, input_shape, mode)
    return _total(ops, trained, element_bytes, mode == 'train',
                  depthwise_bytes)


@contextlib.contextmanager
def saved_tensors(model=None):
    """While active, record every distinct storage autograd saves for
    backward, each once, leaving out ``model``'s parameters and buffers:
    yields a dict ``{storage pointer: bytes}``, filled as forwards run. Its
    sum for one float32 training forward of an E3D backbone is what
    :attr:`~e3d_plugin.cost.Cost.activation_bytes` predicts."""
    import torch
    own = set() if model is None else {
        t.untyped_storage().data_ptr()
        for t in list(model.parameters()) + list(model.buffers())}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield saved


__all__ = ['saved_tensors', 'PARAM_BYTES', 'ELEMENT_BYTES', 'MODES', 'KINDS', 'Op', 'Traffic',
           'op_bytes', 'time_floor', 'unit_ops', 'structure_ops',
           'structure_traffic', 'module_ops', 'module_traffic']
