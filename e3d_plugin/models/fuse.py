"""Fold inference-mode batch norms into the convolutions before them.

In eval mode a batch norm is a per-channel affine map, so
``bn(conv(x)) = conv'(x)`` with ``w' = w * g / sqrt(v + eps)`` and
``b' = (b - m) * g / sqrt(v + eps) + beta``. Folding it removes one pass
over every conv output: a network of depthwise and pointwise convs is
memory-bound on a GPU, and its norms and activations move most of its bytes
(``e3d_plugin.traffic``: about 60 % of E3D-M's at 16x224x224), so an
inference step moves fewer bytes. Only for inference: the folded model has
no norm statistics left to train.
"""
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch.nn.modules.batchnorm import _BatchNorm


def _fold(conv, norm):
    """Fold ``norm`` (eval statistics) into ``conv``'s weight and bias."""
    scale = norm.weight if norm.affine else torch.ones_like(
        norm.running_var)
    shift = norm.bias if norm.affine else torch.zeros_like(
        norm.running_mean)
    factor = scale / torch.sqrt(norm.running_var + norm.eps)
    weight = conv.weight * factor.reshape((-1, ) + (1, ) *
                                          (conv.weight.dim() - 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(
        norm.running_mean)
    bias = (bias - norm.running_mean) * factor + shift
    conv.weight = nn.Parameter(weight.detach().to(conv.weight.dtype),
                               requires_grad=False)
    conv.bias = nn.Parameter(bias.detach().to(conv.weight.dtype),
                             requires_grad=False)


def fuse_conv_bn(module):
    """Fold the batch norm of every ``ConvModule`` of ``module`` (E3D's
    units, mmaction2's X3D, ...) into its conv, in place; returns
    ``module``.

    A ``ConvModule`` is folded when its order runs the conv then the norm
    (mmcv's default), its norm is a batch norm with running statistics and
    the module is in eval mode; its norm becomes ``nn.Identity``. Anything
    else is left as it is. Call it on a model in eval mode, for inference
    only: a ``ValueError`` is raised when ``module`` is in training mode.
    """
    if module.training:
        raise ValueError(
            'fuse_conv_bn folds the inference statistics of batch norms: '
            'call model.eval() first (a folded model cannot train)')
    folded = 0
    for sub in module.modules():
        if not isinstance(sub, ConvModule) or not sub.with_norm:
            continue
        norm = getattr(sub, sub.norm_name)
        order = sub.order
        if (not isinstance(norm, _BatchNorm)
                or not norm.track_running_stats
                or norm.running_mean is None
                or order.index('conv') > order.index('norm')
                or sub.conv.weight.shape[0] != norm.num_features):
            continue
        with torch.no_grad():
            _fold(sub.conv, norm)
        setattr(sub, sub.norm_name, nn.Identity())
        folded += 1
    module.folded_norms = folded
    return module


__all__ = ['fuse_conv_bn']
