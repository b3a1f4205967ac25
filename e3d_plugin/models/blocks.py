"""Units of the E3D search space as ``nn.Module``s, built from block specs.

Every unit is conv-norm-act based (mmcv ``ConvModule``), pads ``k // 2`` so
that a stride-2 unit maps ``H`` to ``ceil(H / 2)``, and never strides in time.

Causal units (``causal=True``) pad time only on the past side and pool
squeeze-excitation cumulatively over time, so that the output at frame ``t``
depends on frames ``0..t`` only. They can also run as a stream
(:meth:`ConvUnit.stream` / :meth:`ResidualUnit.stream`): chunks of new frames
in, the same outputs as the whole clip, with the few past frames each
temporal conv needs kept in a :class:`StreamCache`.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_activation_layer

from ..structure import se_width
from ..units import ACT_CFGS as _ACTIVATIONS, BOTTLENECK_KINDS
from . import depthwise  # noqa: F401  (registers DepthwiseConv3d)


def unit_act_cfg(act, act_cfg):
    """Activation config of a block: its own ``act`` or the backbone's."""
    return act_cfg if act is None else _ACTIVATIONS[act]


class StreamCache:
    """The state of one streaming step: what the previous step left
    (``state``), what this step leaves (``new_state``) and how many frames
    came before this chunk (``frames``, a float tensor of shape ``(1, )``,
    or ``(N, )``: one count per video).

    Keys are the module names in the backbone; a key missing from ``state``
    stands for zeros (the start of a stream), allocated at the first step
    from the chunk's size.
    """

    def __init__(self, state, frames):
        self.state = state
        self.new_state = {}
        self.frames = frames

    def take(self, key, shape, like):
        """The stored tensor of ``key``, or zeros of ``shape`` at a start."""
        value = self.state.get(key)
        return like.new_zeros(shape) if value is None else value

    def put(self, key, value):
        """Record ``value`` as the state of ``key`` after this step."""
        self.new_state[key] = value


def framewise(module, x):
    """A ``ConvModule`` whose conv is ``1 x k x k`` (no temporal extent)
    applied as a 2D conv to every frame: the same result, but PyTorch's CPU
    kernels for 3D convs fall back to a slow path on one-frame inputs,
    which a stream of single frames would hit at every step."""
    conv = module.conv
    n, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(n * t, c, h, w)
    out = F.conv2d(frames, conv.weight[:, :, 0], conv.bias, conv.stride[1:],
                   conv.padding[1:], conv.dilation[1:], conv.groups)
    out = out.reshape((n, t) + out.shape[1:]).transpose(1, 2)
    if module.with_norm:
        out = module.norm(out)
    if module.with_activation:
        out = module.activate(out)
    return out


def run_layer(layer, x, cache):
    """Apply ``layer`` to a chunk of ``x``: as a stream where the layer
    keeps state, frame by frame where it has no temporal extent."""
    stream = getattr(layer, 'stream', None)
    if stream is not None:
        return stream(x, cache)
    if (isinstance(layer, ConvModule) and layer.conv.weight.dim() == 5
            and layer.conv.kernel_size[0] == 1
            and layer.order == ('conv', 'norm', 'act')):
        return framewise(layer, x)
    return layer(x)


class CausalConvModule(ConvModule):
    """A ``ConvModule`` whose temporal padding is all on the past side:
    ``kt - 1`` zero frames before the clip, none after. Built with zero
    temporal padding; the conv, norm and weights are those of ``ConvModule``
    (same parameter names, so checkpoints load either way)."""

    def __init__(self, *args, past, **kwargs):
        super().__init__(*args, **kwargs)
        self.past = past
        self.stream_key = None

    def forward(self, x, activate=True, norm=True):
        """Pad ``past`` zero frames before ``x``, then conv-norm-act."""
        x = F.pad(x, (0, 0, 0, 0, self.past, 0))
        return super().forward(x, activate, norm)

    def state_shape(self, batch_size, height, width):
        """Shape of the buffer of past input frames this conv keeps."""
        return (batch_size, self.in_channels, self.past, height, width)

    def stream(self, x, cache):
        """Conv-norm-act of a chunk, preceded by the buffered past frames."""
        n, _, _, h, w = x.shape
        past = cache.take(self.stream_key, self.state_shape(n, h, w), x)
        x = torch.cat([past, x], 2)
        cache.put(self.stream_key, x[:, :, x.shape[2] - self.past:])
        return super().forward(x)


def _depthwise_cfg(conv_cfg, fast_backward, autocast_fp32, triton=False):
    """The conv config of a depthwise conv: :class:`DepthwiseConv3d` (same
    forward; a fast CPU backward, float32 under autocast, Triton kernels on
    CUDA, as asked) where ``conv_cfg`` is plain ``Conv3d``."""
    if conv_cfg is None or conv_cfg.get('type') in ('Conv3d', nn.Conv3d):
        cfg = dict(conv_cfg or {}, type='DepthwiseConv3d',
                   fast_backward=fast_backward, autocast_fp32=autocast_fp32)
        if triton:
            cfg['triton'] = True
        return cfg
    return conv_cfg


def _conv(cin, cout, kernel_t, kernel, stride, conv_cfg, norm_cfg, act_cfg,
          groups=1, causal=False, fast_depthwise=False,
          depthwise_fp32=False, depthwise_triton=False):
    causal = causal and kernel_t > 1
    if ((fast_depthwise or depthwise_fp32 or depthwise_triton) and groups > 1
            and groups == cin == cout):
        conv_cfg = _depthwise_cfg(conv_cfg, fast_depthwise, depthwise_fp32,
                                  depthwise_triton)
    kwargs = dict(
        kernel_size=(kernel_t, kernel, kernel),
        stride=(1, stride, stride),
        padding=(0 if causal else kernel_t // 2, kernel // 2, kernel // 2),
        groups=groups,
        bias=False,
        conv_cfg=conv_cfg,
        norm_cfg=norm_cfg,
        act_cfg=act_cfg)
    if causal:
        return CausalConvModule(cin, cout, past=kernel_t - 1, **kwargs)
    return ConvModule(cin, cout, **kwargs)


class SqueezeExcitation(nn.Module):
    """Channel gating from globally pooled features (Hu et al.).

    With ``causal=True`` the pooling is spatial per frame, then a running
    mean over time: frame ``t`` is gated by the mean over frames ``0..t``.
    """

    def __init__(self, channels, ratio, causal=False):
        super().__init__()
        hidden = se_width(channels, ratio)
        self.channels = channels
        self.causal = causal
        self.stream_key = None
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv3d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def _excite(self, x, pooled):
        return x * self.gate(self.fc2(self.act(self.fc1(pooled))))

    def forward(self, x):
        """Scale each channel of ``x`` by its learnt gate."""
        if not self.causal:
            return self._excite(x, self.pool(x))
        frames = x.mean((3, 4), keepdim=True)
        count = torch.arange(
            1, x.shape[2] + 1, device=x.device, dtype=x.dtype)
        return self._excite(x, frames.cumsum(2) / count.view(1, 1, -1, 1, 1))

    def state_shape(self, batch_size, height=None, width=None):
        """Shape of the running sum over past frames of the pooled input."""
        return (batch_size, self.channels, 1, 1, 1)

    def stream(self, x, cache):
        """Gate a chunk with running means that include the past frames."""
        total = cache.take(self.stream_key, self.state_shape(x.shape[0]), x)
        frames = x.mean((3, 4), keepdim=True)
        sums = total + frames.cumsum(2)
        # frames seen before this chunk: one count for the batch (1, ) or
        # one per video (N, ) (a StaticStream restarts videos one by one)
        count = cache.frames.reshape(-1, 1) + torch.arange(
            1, x.shape[2] + 1, device=x.device, dtype=x.dtype)
        cache.put(self.stream_key, sums[:, :, -1:])
        return self._excite(
            x, sums / count.view(count.shape[0], 1, -1, 1, 1))


class ConvUnit(nn.Module):
    """Conv3d - norm - activation (a ``conv`` block unit)."""

    has_shortcut = False

    def __init__(self, in_channels, out_channels, kernel, kernel_t, stride,
                 conv_cfg, norm_cfg, act_cfg, with_cp=False, causal=False,
                 **kwargs):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, kernel_t, kernel, stride,
                          conv_cfg, norm_cfg, act_cfg, causal=causal)
        self.with_cp = with_cp

    @property
    def layers(self):
        """The unit's layers in the order they run."""
        return [self.conv]

    def forward(self, x):
        """Apply the conv."""
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self.conv, x, use_reentrant=False)
        return self.conv(x)

    def stream(self, x, cache):
        """Apply the conv to a chunk of new frames (causal units)."""
        return run_layer(self.conv, x, cache)


class ResidualUnit(nn.Module):
    """A ``res``, ``btn`` or ``dwbtn`` unit with its optional shortcut.

    ``res``: ``(kt,k,k)`` conv, ``(kt,k,k)`` conv. ``btn`` / ``dwbtn``:
    1x1x1 conv, ``(kt,k,k)`` conv (depthwise for ``dwbtn``), 1x1x1 conv. The
    stride sits on the first ``(kt,k,k)`` conv; SE follows the last one. An
    identity shortcut (average-pooled 1x2x2 when strided) exists only where
    the width does not change; the activation follows the sum.
    """

    def __init__(self, kind, in_channels, out_channels, kernel, kernel_t,
                 stride, conv_cfg, norm_cfg, act_cfg, bottleneck=0, se=0.0,
                 with_cp=False, causal=False, fast_depthwise=False,
                 depthwise_fp32=False, depthwise_triton=False):
        super().__init__()
        self.kind = kind
        self.with_cp = with_cp
        convs = []
        if kind == 'res':
            convs.append(
                _conv(in_channels, out_channels, kernel_t, kernel, stride,
                      conv_cfg, norm_cfg, act_cfg, causal=causal))
            convs.append(
                _conv(out_channels, out_channels, kernel_t, kernel, 1,
                      conv_cfg, norm_cfg, None, causal=causal))
            se_channels = out_channels
        elif kind in BOTTLENECK_KINDS:
            groups = bottleneck if kind == 'dwbtn' else 1
            convs.append(
                _conv(in_channels, bottleneck, 1, 1, 1, conv_cfg, norm_cfg,
                      act_cfg))
            convs.append(
                _conv(bottleneck, bottleneck, kernel_t, kernel, stride,
                      conv_cfg, norm_cfg, None if se else act_cfg, groups,
                      causal=causal, fast_depthwise=fast_depthwise,
                      depthwise_fp32=depthwise_fp32,
                      depthwise_triton=depthwise_triton))
            se_channels = bottleneck
        else:
            raise ValueError(f'ResidualUnit does not build {kind!r} units')
        layers = []
        for index, conv in enumerate(convs, 1):
            layers.append((f'conv{index}', conv))
        if se:
            layers.append(
                ('se', SqueezeExcitation(se_channels, se, causal=causal)))
            if kind != 'res':
                layers.append(('se_act', build_activation_layer(act_cfg)))
        if kind != 'res':
            layers.append(('conv3',
                           _conv(bottleneck, out_channels, 1, 1, 1, conv_cfg,
                                 norm_cfg, None)))
        for name, layer in layers:
            self.add_module(name, layer)
        self._order = [name for name, _ in layers]

        self.has_shortcut = in_channels == out_channels
        if self.has_shortcut and stride == 2:
            self.downsample = ShortcutPool()
        else:
            self.downsample = None
        self.act = build_activation_layer(act_cfg) if act_cfg else None

    @property
    def last_norm(self):
        """Norm layer of the last conv: zero-initialised in residual units."""
        last = 'conv3' if self.kind != 'res' else 'conv2'
        return getattr(self, last).norm

    @property
    def layers(self):
        """The residual branch's layers in the order they run."""
        return [getattr(self, name) for name in self._order]

    def _residual(self, x):
        out = x
        for layer in self.layers:
            out = layer(out)
        return out

    def forward(self, x):
        """Residual branch, plus the shortcut where there is one."""
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(self._residual, x, use_reentrant=False)
        else:
            out = self._residual(x)
        if self.has_shortcut:
            # In place: the last norm's backward does not need its output.
            out += x if self.downsample is None else self.downsample(x)
        return self.act(out) if self.act is not None else out

    def stream(self, x, cache):
        """The unit on a chunk of new frames (causal units): the residual
        branch as a stream, the shortcut as usual (it is per frame)."""
        out = x
        for layer in self.layers:
            out = run_layer(layer, out, cache)
        if self.has_shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.act(out) if self.act is not None else out



class ShortcutPool(nn.Module):
    """The shortcut of a strided unit: 1x2x2 average pooling with stride
    1x2x2, ``ceil_mode`` (``ceil(H / 2)`` like the conv path on odd
    sizes); a side of one pixel is kept as it is (a 2-wide window does not
    fit in it), so a unit takes any input its convs take."""

    def forward(self, x):
        """Pool ``x`` (N, C, T, H, W) to (N, C, T, ceil(H / 2),
        ceil(W / 2))."""
        kernel = (1, min(2, x.shape[-2]), min(2, x.shape[-1]))
        return F.avg_pool3d(x, kernel, (1, 2, 2), ceil_mode=True)

def stream_state_shapes(unit, batch_size, height, width):
    """Shapes of the stream state a causal unit keeps for an input of
    ``height x width``, keyed by module name, and the unit's output size."""
    shapes = {}
    for layer in unit.layers:
        if getattr(layer, 'stream_key', None) is not None:
            shapes[layer.stream_key] = layer.state_shape(
                batch_size, height, width)
        if isinstance(layer, ConvModule):
            # odd kernels padded k // 2: the output is ceil(size / stride)
            stride = layer.conv.stride[-1]
            height, width = -(-height // stride), -(-width // stride)
    return shapes, (height, width)


def build_units(block, conv_cfg, norm_cfg, act_cfg, with_cp=False,
                causal=False, fast_depthwise=False, depthwise_fp32=False,
                depthwise_triton=False):
    """An ``nn.Sequential`` of the ``block.depth`` units of one block;
    ``causal`` units see only the past in time (see the module doc);
    ``fast_depthwise`` / ``depthwise_fp32`` / ``depthwise_triton`` build the
    depthwise convs of ``dwbtn`` units as
    :class:`~e3d_plugin.models.depthwise.DepthwiseConv3d` with its fast CPU
    backward / in float32 under autocast / with Triton kernels on CUDA."""
    act_cfg = unit_act_cfg(block.act, act_cfg)
    units = []
    for index in range(block.depth):
        first = index == 0
        kwargs = dict(
            in_channels=block.in_channels if first else block.out_channels,
            out_channels=block.out_channels,
            kernel=block.kernel,
            kernel_t=block.kernel_t,
            stride=block.stride if first else 1,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            with_cp=with_cp,
            causal=causal)
        if block.kind == 'conv':
            units.append(ConvUnit(**kwargs))
        else:
            units.append(
                ResidualUnit(
                    block.kind,
                    bottleneck=block.bottleneck,
                    se=block.se,
                    fast_depthwise=fast_depthwise,
                    depthwise_fp32=depthwise_fp32,
                    depthwise_triton=depthwise_triton,
                    **kwargs))
    return nn.Sequential(*units)


__all__ = [
    'ConvUnit', 'ResidualUnit', 'SqueezeExcitation', 'CausalConvModule',
    'StreamCache', 'build_units', 'run_layer', 'stream_state_shapes'
]
