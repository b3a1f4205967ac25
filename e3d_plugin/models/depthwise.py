"""A depthwise 3D convolution whose CPU backward is fast.

On CPU, PyTorch's backward of a depthwise ``Conv3d`` (``groups`` equal to the
channels) runs a generic grouped-convolution path that costs 10-25x the
forward: in a training step of E3D-XS at 8x40x40 it took about 60 % of the
step (``bench/study_speed.py --profile``). :class:`DepthwiseConv3d` keeps the
forward of ``nn.Conv3d`` and computes the two gradients (of the input and of
the weight) with loops compiled by numba over the channels-last layout,
where the innermost loop runs over contiguous channels.

The fast backward is used only where it applies: a CPU float32 tensor, a
depthwise conv with no dilation, gradients being recorded, numba importable,
and not while tracing, compiling (``torch.compile``) or exporting.
Everywhere else (GPU, inference, ONNX export, other dtypes) it is
``nn.Conv3d`` itself. Under autocast it can also compute in float32
(``autocast_fp32``): a mixed-precision policy for the depthwise convs
alone. On CUDA it can instead run Triton kernels, forward and backward
(``triton=True``, :mod:`e3d_plugin.models.triton_depthwise`), where
PyTorch's 5-D depthwise kernels are slow. Its parameters and state-dict
keys are those of ``nn.Conv3d``, so checkpoints load either way.

The gradients are the same sums as PyTorch's, in another order (float32
rounding differs by about 1e-6 relative; tested against
``torch.ops.aten.convolution_backward``).
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS

try:  # numba is optional: without it the layer is nn.Conv3d
    import numba
    import numpy as np
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None


def _compiling():
    """Whether ``torch.compile`` is tracing this call (its graphs cannot
    hold numba calls: the layer is then ``nn.Conv3d``)."""
    compiler = getattr(torch, 'compiler', None)
    return compiler is not None and compiler.is_compiling()


def _triton_module(x):
    """:mod:`.triton_depthwise` where ``x`` may take the Triton kernels (a
    CUDA tensor with triton installed; a CPU tensor only while that
    module's ``INTERPRET`` switch is on, for tests: not merely under
    ``TRITON_INTERPRET=1``), else None. A CPU run imports nothing here."""
    if x.device.type == 'cpu':
        module = sys.modules.get(__name__.rpartition('.')[0] +
                                 '.triton_depthwise')
        if module is None or not module.INTERPRET:
            return None
    elif x.device.type != 'cuda':
        return None
    from . import triton_depthwise as module
    return module if module.triton_available(x) else None


def numba_available():
    """Whether the fast backward can run (numba is installed)."""
    return numba is not None


if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _grad_weight(x, g, kt, kh, kw, st, sh, sw, pt, ph, pw):
        """Weight gradient ``(kt, kh, kw, C)`` of a depthwise conv from the
        input ``x`` ``(N, T, H, W, C)`` and the output gradient ``g``
        ``(N, To, Ho, Wo, C)``. Each weight sums thousands of products:
        they are accumulated in float64 (a float32 running sum drifts
        about 10x further from the exact sum than PyTorch's blocked one)."""
        n_, t_, h_, w_, c_ = x.shape
        to_, ho_, wo_ = g.shape[1], g.shape[2], g.shape[3]
        out = np.zeros((kt, kh, kw, c_), dtype=np.float64)
        for n in range(n_):
            for to in range(to_):
                for a in range(kt):
                    ti = to * st + a - pt
                    if ti < 0 or ti >= t_:
                        continue
                    for ho in range(ho_):
                        for b in range(kh):
                            hi = ho * sh + b - ph
                            if hi < 0 or hi >= h_:
                                continue
                            for wo in range(wo_):
                                for d in range(kw):
                                    wi = wo * sw + d - pw
                                    if wi < 0 or wi >= w_:
                                        continue
                                    for c in range(c_):
                                        out[a, b, d, c] += (
                                            np.float64(x[n, ti, hi, wi, c])
                                            * g[n, to, ho, wo, c])
        return out.astype(np.float32)

    @numba.njit(cache=True, nogil=True)
    def _grad_input(g, w, t_, h_, w_, st, sh, sw, pt, ph, pw):
        """Input gradient ``(N, T, H, W, C)`` of a depthwise conv from the
        output gradient ``g`` ``(N, To, Ho, Wo, C)`` and the weight ``w``
        ``(kt, kh, kw, C)``."""
        n_, to_, ho_, wo_, c_ = g.shape
        kt, kh, kw = w.shape[0], w.shape[1], w.shape[2]
        out = np.zeros((n_, t_, h_, w_, c_), dtype=np.float32)
        for n in range(n_):
            for to in range(to_):
                for a in range(kt):
                    ti = to * st + a - pt
                    if ti < 0 or ti >= t_:
                        continue
                    for ho in range(ho_):
                        for b in range(kh):
                            hi = ho * sh + b - ph
                            if hi < 0 or hi >= h_:
                                continue
                            for wo in range(wo_):
                                for d in range(kw):
                                    wi = wo * sw + d - pw
                                    if wi < 0 or wi >= w_:
                                        continue
                                    for c in range(c_):
                                        out[n, ti, hi, wi, c] += (
                                            w[a, b, d, c] *
                                            g[n, to, ho, wo, c])
        return out


def _channels_last(t):
    """``t`` (N, C, T, H, W) as a contiguous (N, T, H, W, C) numpy array
    (no copy when ``t`` is already in ``channels_last_3d``)."""
    return t.detach().permute(0, 2, 3, 4, 1).contiguous().numpy()


class _DepthwiseConv3dFunction(torch.autograd.Function):
    """``F.conv3d`` forward, numba backward (depthwise, no bias)."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv3d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        g = _channels_last(grad)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            w = weight.detach()[:, 0].permute(1, 2, 3, 0).contiguous()
            out = _grad_input(g, w.numpy(), x.shape[2], x.shape[3],
                              x.shape[4], *stride, *padding)
            grad_x = torch.from_numpy(out).permute(0, 4, 1, 2, 3)
            if x.is_contiguous():
                grad_x = grad_x.contiguous()
        if ctx.needs_input_grad[1]:
            out = _grad_weight(_channels_last(x), g, *weight.shape[2:],
                               *stride, *padding)
            grad_w = torch.from_numpy(out).permute(3, 0, 1, 2).unsqueeze(1)
            grad_w = grad_w.contiguous(
                memory_format=torch.channels_last_3d
                if weight.is_contiguous(memory_format=torch.channels_last_3d)
                and not weight.is_contiguous() else torch.contiguous_format)
        return grad_x, grad_w, None, None


@MODELS.register_module('DepthwiseConv3d')
class DepthwiseConv3d(nn.Conv3d):
    """``nn.Conv3d`` with a fast CPU backward where it is depthwise (see the
    module docstring); same parameters and outputs.

    Args:
        *args, **kwargs: Those of ``nn.Conv3d``.
        fast_backward (bool): Take the numba backward where
            :meth:`fast_path` allows it. Defaults to True.
        autocast_fp32 (bool): Under autocast (mixed precision), compute
            this conv in float32: the input is cast up, the conv runs with
            autocast off, and the output is cast back to the input's dtype,
            so that the layers around it see what they would see without
            this. Outside autocast nothing changes. Defaults to False.
        triton (bool): On CUDA, compute the conv and both gradients with
            the Triton kernels of :mod:`~e3d_plugin.models.triton_depthwise`
            where :meth:`triton_path` allows it (an NCDHW-contiguous
            float16 / bfloat16 / float32 input, temporal stride 1, not while
            tracing, compiling or exporting). Under autocast the conv runs
            in the autocast dtype, as ``nn.Conv3d`` would (in float32 with
            ``autocast_fp32``). CPU tensors never take it (unless
            ``triton_depthwise.INTERPRET`` is on: Triton's interpreter,
            for tests); nor does anything without triton installed.
            Defaults to False.
    """

    def __init__(self, *args, fast_backward=True, autocast_fp32=False,
                 triton=False, **kwargs):
        super().__init__(*args, **kwargs)
        for name, value in (('fast_backward', fast_backward),
                            ('autocast_fp32', autocast_fp32),
                            ('triton', triton)):
            if not isinstance(value, bool):
                raise TypeError(
                    f'DepthwiseConv3d: {name} must be True or False, got '
                    f'{value!r}')
        self.fast_backward = fast_backward
        self.autocast_fp32 = autocast_fp32
        self.triton = triton

    def _depthwise(self):
        """Whether this conv is depthwise with no bias, no dilation and
        zero padding given as numbers."""
        return (self.bias is None
                and self.groups == self.in_channels == self.out_channels
                and self.weight.shape[1] == 1
                and self.dilation == (1, 1, 1)
                and self.padding_mode == 'zeros'
                and isinstance(self.padding, tuple))

    def triton_path(self, x):
        """Whether this call takes the Triton kernels (see ``triton``)."""
        if not self.triton or not self._depthwise():
            return False
        if (x.dim() != 5 or x.dtype not in _TRITON_DTYPES
                or not x.is_contiguous() or self.stride[0] != 1
                or torch.jit.is_tracing() or torch.jit.is_scripting()
                or _compiling() or torch.onnx.is_in_onnx_export()):
            return False
        return _triton_module(x) is not None

    def fast_path(self, x):
        """Whether this call takes the numba backward."""
        return (numba is not None and self.fast_backward
                and self._depthwise()
                and x.device.type == 'cpu' and x.dtype == torch.float32
                and self.weight.dtype == torch.float32
                and torch.is_grad_enabled()
                and (x.requires_grad or self.weight.requires_grad)
                and not torch.jit.is_tracing()
                and not torch.jit.is_scripting()
                and not _compiling()
                and not torch.onnx.is_in_onnx_export())

    def _convolve(self, x):
        if self.triton_path(x):
            return self._triton_convolve(x)
        if self.fast_path(x):
            return _DepthwiseConv3dFunction.apply(x, self.weight,
                                                  tuple(self.stride),
                                                  tuple(self.padding))
        return super().forward(x)

    def _triton_convolve(self, x):
        from .triton_depthwise import depthwise_conv3d_triton
        weight = self.weight
        device = x.device.type
        if autocast_enabled(device):
            # what autocast does for a conv: both operands in its dtype
            dtype = autocast_dtype(device)
            x, weight = x.to(dtype), weight.to(dtype)
        if weight.dtype != x.dtype:  # nn.Conv3d raises its error
            return super().forward(x)
        return depthwise_conv3d_triton(x, weight, tuple(self.stride),
                                       tuple(self.padding))

    def forward(self, x):
        """The convolution; the Triton kernels where :meth:`triton_path`,
        the numba backward where :meth:`fast_path`; float32 under autocast
        where ``autocast_fp32``."""
        device = x.device.type
        if self.autocast_fp32 and autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                out = self._convolve(x.float())
            return out.to(x.dtype)
        return self._convolve(x)


_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def autocast_dtype(device_type):
    """The dtype autocast computes in on ``device_type``."""
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # torch < 2.4
        if device_type == 'cpu':
            return torch.get_autocast_cpu_dtype()
        return torch.get_autocast_gpu_dtype()


def autocast_enabled(device_type):
    """Whether autocast is on for ``device_type`` (``'cpu'``, ``'cuda'``);
    False for a device type autocast has no mode for (``'meta'``: the
    traffic count's stand-in tensors)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # 'unknown device type for autocast'
        return False
    except TypeError:  # torch < 2.4 took no device type
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


__all__ = [
    'DepthwiseConv3d', 'autocast_dtype', 'autocast_enabled', 'numba_available'
]
