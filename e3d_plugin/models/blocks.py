"""Units of the E3D search space as ``nn.Module``s, built from block specs.

Every unit is conv-norm-act based (mmcv ``ConvModule``), pads ``k // 2`` so
that a stride-2 unit maps ``H`` to ``ceil(H / 2)``, and never strides in time.
"""
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_activation_layer

from ..structure import BOTTLENECK_KINDS, se_width

_ACTIVATIONS = {'relu': dict(type='ReLU', inplace=True),
                'swish': dict(type='SiLU', inplace=True)}


def unit_act_cfg(act, act_cfg):
    """Activation config of a block: its own ``act`` or the backbone's."""
    return act_cfg if act is None else _ACTIVATIONS[act]


def _conv(cin, cout, kernel_t, kernel, stride, conv_cfg, norm_cfg, act_cfg,
          groups=1):
    return ConvModule(
        cin,
        cout,
        kernel_size=(kernel_t, kernel, kernel),
        stride=(1, stride, stride),
        padding=(kernel_t // 2, kernel // 2, kernel // 2),
        groups=groups,
        bias=False,
        conv_cfg=conv_cfg,
        norm_cfg=norm_cfg,
        act_cfg=act_cfg)


class SqueezeExcitation(nn.Module):
    """Channel gating from globally pooled features (Hu et al.)."""

    def __init__(self, channels, ratio):
        super().__init__()
        hidden = se_width(channels, ratio)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv3d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        """Scale each channel of ``x`` by its learnt gate."""
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class ConvUnit(nn.Module):
    """Conv3d - norm - activation (a ``conv`` block unit)."""

    has_shortcut = False

    def __init__(self, in_channels, out_channels, kernel, kernel_t, stride,
                 conv_cfg, norm_cfg, act_cfg, with_cp=False, **kwargs):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, kernel_t, kernel, stride,
                          conv_cfg, norm_cfg, act_cfg)
        self.with_cp = with_cp

    def forward(self, x):
        """Apply the conv."""
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self.conv, x, use_reentrant=False)
        return self.conv(x)


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
                 with_cp=False):
        super().__init__()
        self.kind = kind
        self.with_cp = with_cp
        convs = []
        if kind == 'res':
            convs.append(
                _conv(in_channels, out_channels, kernel_t, kernel, stride,
                      conv_cfg, norm_cfg, act_cfg))
            convs.append(
                _conv(out_channels, out_channels, kernel_t, kernel, 1,
                      conv_cfg, norm_cfg, None))
            se_channels = out_channels
        elif kind in BOTTLENECK_KINDS:
            groups = bottleneck if kind == 'dwbtn' else 1
            convs.append(
                _conv(in_channels, bottleneck, 1, 1, 1, conv_cfg, norm_cfg,
                      act_cfg))
            convs.append(
                _conv(bottleneck, bottleneck, kernel_t, kernel, stride,
                      conv_cfg, norm_cfg, None if se else act_cfg, groups))
            se_channels = bottleneck
        else:
            raise ValueError(f'ResidualUnit does not build {kind!r} units')
        layers = []
        for index, conv in enumerate(convs, 1):
            layers.append((f'conv{index}', conv))
        if se:
            layers.append(('se', SqueezeExcitation(se_channels, se)))
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
            # ceil_mode matches the conv path's ceil(H / 2) on odd sizes.
            self.downsample = nn.AvgPool3d((1, 2, 2), (1, 2, 2),
                                           ceil_mode=True)
        else:
            self.downsample = None
        self.act = build_activation_layer(act_cfg) if act_cfg else None

    @property
    def last_norm(self):
        """Norm layer of the last conv: zero-initialised in residual units."""
        last = 'conv3' if self.kind != 'res' else 'conv2'
        return getattr(self, last).norm

    def _residual(self, x):
        out = x
        for name in self._order:
            out = getattr(self, name)(out)
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


def build_units(block, conv_cfg, norm_cfg, act_cfg, with_cp=False):
    """An ``nn.Sequential`` of the ``block.depth`` units of one block."""
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
            with_cp=with_cp)
        if block.kind == 'conv':
            units.append(ConvUnit(**kwargs))
        else:
            units.append(
                ResidualUnit(
                    block.kind,
                    bottleneck=block.bottleneck,
                    se=block.se,
                    **kwargs))
    return nn.Sequential(*units)


__all__ = ['ConvUnit', 'ResidualUnit', 'SqueezeExcitation', 'build_units']
