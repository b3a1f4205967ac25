"""A depthwise 3D convolution in Triton: forward, input and weight gradient.

PyTorch runs 5-D depthwise convs on a GPU with its own CUDA kernels (cuDNN's
depthwise path is 2-D only), whose backward, the weight gradient above all,
took about half of the GPU time of an E3D-M training step. The three
kernels here cover the depthwise convs of E3D's ``dwbtn`` units: one filter
per channel (weight ``(C, 1, kt, kh, kw)``), zero padding, no bias, no
dilation, temporal stride 1 and any spatial stride, on NCDHW-contiguous
tensors (the layout E3D keeps on GPUs), in float16, bfloat16, float32 or
float64, summed in float32 (float64 for float64 tensors).

Each program owns a ``(BT, BH, BW)`` tile (powers of two, about
:data:`TILE` positions, at most :data:`TILE_WIDTH` wide) of (frame, row,
column) positions of one ``(n, c)`` slab. A tap's loads are masked by a
frame, a row and a column vector whose product is the tile's mask: the zero
padding is never materialized and the border checks cost little per
element. 8 warps at 1024 positions: 4 values a thread, which compiles for
sm_90 to 50-80 registers without spills (8 values took 120-255).

- forward: one program per ``(n * c, tile of To x Ho x Wo)``; each output
  sums its ``kt * kh * kw`` taps (unrolled at compile time) in float32.
- input gradient: the gather form of the transposed conv, one program per
  ``(n * c, tile of T x ceil(H / sh) x ceil(W / sw))``. An input pixel
  ``h = sh * u + r`` receives from the output row ``(h + ph - b) / sh``
  only for the taps ``b`` with ``(r + ph - b) % sh == 0``: the program
  walks the ``sh * sw`` residues ``r`` and, for each, only those taps
  (chosen at compile time), so a stride-2 conv does the forward's number of
  multiply-adds, none masked out for parity.
- weight gradient: every tap from one pass over ``x`` and the output
  gradient. One program per ``(n, c, tile of To x Ho x Wo)`` loads the
  tile's output gradient once and, for each of the ``kt * kh * kw`` taps,
  the input values it multiplies, reduces their products over the tile
  (in float32) and writes one partial sum per tap. ``torch.sum`` over the
  ``N * tiles`` partials of each channel (a few percent of the bytes the
  kernel reads) gives the gradient: deterministic (no atomics), returned in
  the weight's dtype.

:func:`depthwise_conv3d_triton` is the autograd function (first-order
gradients). CUDA tensors run compiled kernels; CPU tensors run them in
Triton's interpreter (numpy, slow: for tests), which is how the CPU tests
check them, whether or not ``TRITON_INTERPRET=1`` was set before triton was
imported (the kernels call no helper of ``triton.language`` that is itself
a jit function, such as ``tl.zeros`` or ``tl.sum``: those run interpreted
only under that variable). Importing this module never fails: without triton,
:func:`triton_available` is False and the function raises.
:class:`~e3d_plugin.models.depthwise.DepthwiseConv3d` uses it on CUDA
tensors where built with ``triton=True`` (``E3D(depthwise_triton=True)``),
and on CPU tensors only while :data:`INTERPRET` is on (not merely under
``TRITON_INTERPRET=1``, so that a CPU run never takes it).
"""
from __future__ import annotations

import contextlib
import math
import os

import torch

try:  # triton is optional (the extra `triton`)
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = tl = None

#: Let ``DepthwiseConv3d(triton=True)`` take the kernels on CPU tensors,
#: in Triton's interpreter (tests only: it is orders of magnitude slower
#: than PyTorch on a CPU). :func:`depthwise_conv3d_triton` itself always
#: interprets CPU tensors.
INTERPRET = False

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def interpreting():
    """Whether the interpreter is switched on (:data:`INTERPRET` or
    ``TRITON_INTERPRET=1``)."""
    return INTERPRET or os.environ.get('TRITON_INTERPRET', '0') == '1'


@contextlib.contextmanager
def interpret(enabled=True):
    """Context manager setting :data:`INTERPRET` (restored on exit)."""
    global INTERPRET
    previous, INTERPRET = INTERPRET, bool(enabled)
    try:
        yield
    finally:
        INTERPRET = previous


def triton_available(x=None):
    """Whether the kernels can run: triton is importable and either ``x``
    is a CUDA tensor (without ``x``: CUDA is available) or the interpreter
    is switched on (:func:`interpreting`)."""
    if triton is None:
        return False
    if x is not None:
        return x.device.type == 'cuda' or interpreting()
    return torch.cuda.is_available() or interpreting()


# The kernels: plain functions, compiled (``triton.jit``) or interpreted on
# first use (see ``_kernel``), so that the interpreter can be chosen per
# call. The grid is one flat axis. Offsets inside a slab are int32 (a slab
# holds < 2**31 elements, checked), the slab's start int64.


def _forward_kernel(x_ptr, w_ptr, y_ptr, C, T, H, W, To, Ho, Wo, NT, NH, NW,
                    KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                    SH: tl.constexpr, SW: tl.constexpr, PT: tl.constexpr,
                    PH: tl.constexpr, PW: tl.constexpr, BT: tl.constexpr,
                    BH: tl.constexpr, BW: tl.constexpr, ACC: tl.constexpr):
    pid = tl.program_id(0)
    tw = pid % NW
    rest = pid // NW
    th = rest % NH
    rest = rest // NH
    tt = rest % NT
    nc = rest // NT
    c = nc % C
    to = tt * BT + tl.arange(0, BT)[:, None, None]
    ho = th * BH + tl.arange(0, BH)[None, :, None]
    wo = tw * BW + tl.arange(0, BW)[None, None, :]
    h0 = ho * SH - PH  # input row and column of tap (., 0, 0)
    w0 = wo * SW - PW
    x_base = x_ptr + nc.to(tl.int64) * (T * H * W)
    w_base = w_ptr + c * (KT * KH * KW)
    acc = tl.full([BT, BH, BW], 0, dtype=ACC)
    for a in tl.static_range(KT):
        ti = to + (a - PT)
        t_ok = (ti >= 0) & (ti < T) & (to < To)
        t_off = ti * (H * W)
        for b in tl.static_range(KH):
            hi = h0 + b
            th_ok = t_ok & (hi >= 0) & (hi < H) & (ho < Ho)
            th_off = t_off + hi * W
            for d in tl.static_range(KW):
                wi = w0 + d
                w_ok = (wi >= 0) & (wi < W) & (wo < Wo)
                v = tl.load(x_base + (th_off + wi), mask=th_ok & w_ok,
                            other=0.0)
                wv = tl.load(w_base + ((a * KH + b) * KW + d))
                acc += v.to(ACC) * wv.to(ACC)
    y = y_ptr + nc.to(tl.int64) * (To * Ho * Wo)
    tl.store(y + (to * (Ho * Wo) + ho * Wo + wo),
             acc.to(y_ptr.dtype.element_ty),
             mask=(to < To) & (ho < Ho) & (wo < Wo))


def _grad_input_kernel(g_ptr, w_ptr, gx_ptr, C, T, H, W, To, Ho, Wo, Hq, Wq,
                       NT, NH, NW,
                       KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                       SH: tl.constexpr, SW: tl.constexpr, PT: tl.constexpr,
                       PH: tl.constexpr, PW: tl.constexpr, BT: tl.constexpr,
                       BH: tl.constexpr, BW: tl.constexpr, ACC: tl.constexpr):
    # The tile runs over (t, u, v); for each residue (rh, rw) it computes
    # the input pixels (t, SH * u + rh, SW * v + rw), from the taps whose
    # output row (hi + PH - b) / SH and column divide exactly.
    pid = tl.program_id(0)
    tw = pid % NW
    rest = pid // NW
    th = rest % NH
    rest = rest // NH
    tt = rest % NT
    nc = rest // NT
    c = nc % C
    t = tt * BT + tl.arange(0, BT)[:, None, None]
    u = th * BH + tl.arange(0, BH)[None, :, None]
    v = tw * BW + tl.arange(0, BW)[None, None, :]
    g_base = g_ptr + nc.to(tl.int64) * (To * Ho * Wo)
    w_base = w_ptr + c * (KT * KH * KW)
    gx_base = gx_ptr + nc.to(tl.int64) * (T * H * W)
    for rh in tl.static_range(SH):
        for rw in tl.static_range(SW):
            acc = tl.full([BT, BH, BW], 0, dtype=ACC)
            for a in tl.static_range(KT):
                to = t + (PT - a)
                t_ok = (to >= 0) & (to < To)
                t_off = to * (Ho * Wo)
                for b in tl.static_range(KH):
                    if (rh + PH - b) % SH == 0:
                        ho = u + (rh + PH - b) // SH
                        th_ok = t_ok & (ho >= 0) & (ho < Ho)
                        th_off = t_off + ho * Wo
                        for d in tl.static_range(KW):
                            if (rw + PW - d) % SW == 0:
                                wo = v + (rw + PW - d) // SW
                                w_ok = (wo >= 0) & (wo < Wo)
                                gv = tl.load(g_base + (th_off + wo),
                                             mask=th_ok & w_ok, other=0.0)
                                wv = tl.load(w_base +
                                             ((a * KH + b) * KW + d))
                                acc += gv.to(ACC) * wv.to(ACC)
            hi = u * SH + rh
            wi = v * SW + rw
            tl.store(gx_base + (t * (H * W) + hi * W + wi),
                     acc.to(gx_ptr.dtype.element_ty),
                     mask=(t < T) & (hi < H) & (wi < W))


def _grad_weight_kernel(x_ptr, g_ptr, part_ptr, C, T, H, W, To, Ho, Wo, NT,
                        NH, NW,
                        KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                        SH: tl.constexpr, SW: tl.constexpr, PT: tl.constexpr,
                        PH: tl.constexpr, PW: tl.constexpr, BT: tl.constexpr,
                        BH: tl.constexpr, BW: tl.constexpr, ACC: tl.constexpr):
    # Program (n, c, tile): the tile's output gradient is loaded once; for
    # every tap the input values it multiplies are loaded, and the tile's
    # sum of products is written to partial[c, n * tiles + tile, tap].
    pid = tl.program_id(0)
    tiles = NT * NH * NW
    tile = pid % tiles
    nc = pid // tiles
    n = nc // C
    c = nc % C
    tw = tile % NW
    th = (tile // NW) % NH
    tt = tile // (NW * NH)
    to = tt * BT + tl.arange(0, BT)[:, None, None]
    ho = th * BH + tl.arange(0, BH)[None, :, None]
    wo = tw * BW + tl.arange(0, BW)[None, None, :]
    g_base = g_ptr + nc.to(tl.int64) * (To * Ho * Wo)
    gv = tl.load(g_base + (to * (Ho * Wo) + ho * Wo + wo),
                 mask=(to < To) & (ho < Ho) & (wo < Wo), other=0.0)
    gv = gv.to(ACC)
    h0 = ho * SH - PH
    w0 = wo * SW - PW
    x_base = x_ptr + nc.to(tl.int64) * (T * H * W)
    out = part_ptr + (c * (tl.num_programs(0) // C) + n * tiles + tile) * (
        KT * KH * KW)
    for a in tl.static_range(KT):
        ti = to + (a - PT)
        t_ok = (ti >= 0) & (ti < T) & (to < To)
        t_off = ti * (H * W)
        for b in tl.static_range(KH):
            hi = h0 + b
            th_ok = t_ok & (hi >= 0) & (hi < H) & (ho < Ho)
            th_off = t_off + hi * W
            for d in tl.static_range(KW):
                wi = w0 + d
                w_ok = (wi >= 0) & (wi < W) & (wo < Wo)
                xv = tl.load(x_base + (th_off + wi), mask=th_ok & w_ok,
                             other=0.0)
                total = tl.reduce(xv.to(ACC) * gv, None,
                                  tl.standard._sum_combine)
                tl.store(out + ((a * KH + b) * KW + d), total)


_KERNELS = {}


def _kernel(fn, interpreted):
    """``fn`` as a Triton kernel: interpreted (CPU tensors) or compiled."""
    key = (fn.__name__, interpreted)
    if key not in _KERNELS:
        if interpreted:
            from triton.runtime.interpreter import InterpretedFunction
            _KERNELS[key] = InterpretedFunction(fn)
        else:
            _KERNELS[key] = triton.jit(fn)
    return _KERNELS[key]


#: Outputs a program computes (about), and the widest tile row: tuning
#: knobs for a GPU. With 8 warps (4 values a thread) the three kernels
#: compile for sm_90 to 50-80 registers and no spills; 8 values a thread
#: took 120-255 registers.
TILE = 1024
TILE_WIDTH = 64


def _tile(t, h, w, elements, outputs_per_position=1):
    """A power-of-two ``(BT, BH, BW)`` tile of about ``elements`` positions
    over a ``(t, h, w)`` grid, the number of tiles along each axis and a
    warp count (4 outputs a thread)."""
    p2 = triton.next_power_of_2
    bw = min(p2(w), TILE_WIDTH)
    bh = min(p2(h), max(1, elements // bw))
    bt = min(p2(t), max(1, elements // (bw * bh)))
    counts = (triton.cdiv(t, bt), triton.cdiv(h, bh), triton.cdiv(w, bw))
    warps = min(8, max(1, bt * bh * bw * outputs_per_position // 128))
    return (bt, bh, bw), counts, warps


def _acc_dtype(dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _launch(fn, device, programs, args, warps, constexprs):
    interpreted = device.type != 'cuda'
    kernel = _kernel(fn, interpreted)
    if interpreted:
        kernel[(programs, )](*args, **constexprs)
    else:
        with torch.cuda.device(device):
            kernel[(programs, )](*args, num_warps=warps, **constexprs)


def _geometry(weight, stride, padding, block, dtype):
    kt, kh, kw = weight.shape[2:]
    return dict(KT=kt, KH=kh, KW=kw, SH=stride[1], SW=stride[2],
                PT=padding[0], PH=padding[1], PW=padding[2], BT=block[0],
                BH=block[1], BW=block[2], ACC=_acc_dtype(dtype))


def _output_size(x_shape, kernel, stride, padding):
    return tuple((size + 2 * p - k) // s + 1
                 for size, k, s, p in zip(x_shape[2:], kernel, stride,
                                          padding))


def _forward(x, weight, stride, padding):
    n, c, t, h, w = x.shape
    to, ho, wo = _output_size(x.shape, weight.shape[2:], stride, padding)
    y = torch.empty((n, c, to, ho, wo), dtype=x.dtype, device=x.device)
    if y.numel() == 0:
        return y
    block, counts, warps = _tile(to, ho, wo, TILE)
    _launch(_forward_kernel, x.device, n * c * math.prod(counts),
            (x, weight, y, c, t, h, w, to, ho, wo, *counts), warps,
            _geometry(weight, stride, padding, block, x.dtype))
    return y


def _grad_input(grad, weight, x_shape, stride, padding):
    n, c, t, h, w = x_shape
    to, ho, wo = grad.shape[2:]
    gx = torch.empty(x_shape, dtype=grad.dtype, device=grad.device)
    if gx.numel() == 0:
        return gx
    hq, wq = triton.cdiv(h, stride[1]), triton.cdiv(w, stride[2])
    # a tile of (u, v) gives sh * sw input pixels each
    block, counts, warps = _tile(t, hq, wq, TILE // (stride[1] * stride[2]),
                                 stride[1] * stride[2])
    _launch(_grad_input_kernel, grad.device, n * c * math.prod(counts),
            (grad, weight, gx, c, t, h, w, to, ho, wo, hq, wq, *counts),
            warps, _geometry(weight, stride, padding, block, grad.dtype))
    return gx


def _grad_weight(x, grad, weight, stride, padding):
    n, c, t, h, w = x.shape
    to, ho, wo = grad.shape[2:]
    if grad.numel() == 0:
        return torch.zeros_like(weight)
    block, counts, warps = _tile(to, ho, wo, TILE)
    tiles = math.prod(counts)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    partial = torch.empty((c, n * tiles, weight[0].numel()), dtype=acc,
                          device=x.device)
    _launch(_grad_weight_kernel, x.device, n * c * tiles,
            (x, grad, partial, c, t, h, w, to, ho, wo, *counts), warps,
            _geometry(weight, stride, padding, block, x.dtype))
    # a fixed-order sum over the tiles: deterministic
    return partial.sum(1).reshape(weight.shape).to(weight.dtype)


#: Name of the profiler range around the forward kernel; the backward runs
#: in the autograd node ``_DepthwiseConv3dTritonBackward``. A profile finds
#: the Triton depthwise work by these two names (bench/backbone_speed.py).
PROFILE_FORWARD = 'e3d::depthwise_conv3d_triton'


class _DepthwiseConv3dTriton(torch.autograd.Function):
    """Depthwise conv3d (no bias) with the Triton kernels both ways."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        x, weight = x.contiguous(), weight.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        with torch.profiler.record_function(PROFILE_FORWARD):
            return _forward(x, weight, stride, padding)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _grad_input(grad, weight, x.shape, ctx.stride,
                                 ctx.padding)
        if ctx.needs_input_grad[1]:
            grad_w = _grad_weight(x, grad, weight, ctx.stride, ctx.padding)
        return grad_x, grad_w, None, None


def _triple(value, name):
    values = (value, ) * 3 if isinstance(value, int) else tuple(value)
    if len(values) != 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f'depthwise_conv3d_triton: {name} must be an int or '
                        f'3 ints, got {value!r}')
    return values


def depthwise_conv3d_triton(x, weight, stride=1, padding=0):
    """``F.conv3d(x, weight, None, stride, padding, groups=C)`` with the
    Triton kernels (forward and both gradients; see the module docstring).

    Args:
        x (Tensor): ``(N, C, T, H, W)``, float16 / bfloat16 / float32 /
            float64, on CUDA (compiled kernels) or CPU (Triton's
            interpreter). Made contiguous if it is not.
        weight (Tensor): ``(C, 1, kt, kh, kw)``, same dtype and device.
        stride (int | tuple[int]): ``(1, sh, sw)``: temporal stride 1.
        padding (int | tuple[int]): zero padding ``(pt, ph, pw)``.

    Returns:
        Tensor: ``(N, C, To, Ho, Wo)`` in ``x``'s dtype.
    """
    if triton is None:
        raise ImportError(
            'depthwise_conv3d_triton needs triton: pip install '
            '"e3d_plugin[triton]" (or the triton of your torch build)')
    stride, padding = _triple(stride, 'stride'), _triple(padding, 'padding')
    if x.dim() != 5 or weight.dim() != 5 or weight.shape[1] != 1 or (
            weight.shape[0] != x.shape[1]):
        raise ValueError(
            'depthwise_conv3d_triton: x must be (N, C, T, H, W) and weight '
            f'(C, 1, kt, kh, kw), got {tuple(x.shape)} and '
            f'{tuple(weight.shape)}')
    if x.dtype not in DTYPES or weight.dtype != x.dtype:
        raise TypeError(
            'depthwise_conv3d_triton: x and weight must share a dtype among '
            f'float16, bfloat16, float32, float64; got {x.dtype} and '
            f'{weight.dtype}')
    if x.device != weight.device or x.device.type not in ('cuda', 'cpu'):
        raise ValueError(
            'depthwise_conv3d_triton: x and weight must be on one CUDA '
            f'device (or the CPU, interpreted); got {x.device} and '
            f'{weight.device}')
    if stride[0] != 1 or min(stride) < 1 or min(padding) < 0:
        raise ValueError(
            'depthwise_conv3d_triton: stride must be (1, sh, sw) with sh, '
            f'sw >= 1 and padding >= 0; got stride {stride}, padding '
            f'{padding}')
    if max(x[0, 0].numel(), x.shape[0] * x.shape[1]) >= 2**31:
        raise ValueError(
            'depthwise_conv3d_triton: a (T, H, W) slab and N * C must each '
            f'hold fewer than 2**31 elements, got {tuple(x.shape)}')
    if min(_output_size(x.shape, weight.shape[2:], stride, padding)) < 1:
        raise ValueError(
            f'depthwise_conv3d_triton: input {tuple(x.shape)} is smaller '
            f'than the padded kernel {tuple(weight.shape[2:])}')
    return _DepthwiseConv3dTriton.apply(x, weight, stride, padding)


__all__ = [
    'depthwise_conv3d_triton', 'triton_available', 'interpreting',
    'interpret', 'INTERPRET', 'PROFILE_FORWARD'
]
