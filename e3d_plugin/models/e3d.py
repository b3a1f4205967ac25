"""The E3D backbone for mmaction2 recognizers."""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from mmaction.registry import MODELS
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, kaiming_init
from torch.nn.modules.batchnorm import _BatchNorm

from ..structure import resolve_structure
from .blocks import ResidualUnit, build_units


@MODELS.register_module()
class E3D(BaseModule):
    """A 3D CNN built from an E3D structure (Wang et al., ICLR 2023).

    Give the structure in exactly one way: ``arch`` (a preset name:
    ``'E3D-S'``, ``'E3D-M'``, ``'E3D-L'``), ``structure`` (a list of block
    dicts, see :mod:`e3d_plugin.structure`) or ``structure_file`` (a JSON or
    TinyNAS text file, e.g. a search's ``best_structure.json``). With none of
    them, ``arch='E3D-M'``.

    The structure's blocks are the backbone's stages: ``blocks[0]`` is the
    stem, ``blocks[-1]`` the final 1x1x1 conv. Blocks after the last of
    ``out_indices`` are not built.

    Args:
        arch (str, optional): Preset name.
        structure (list[dict], optional): In-line structure.
        structure_file (str, optional): Path of a structure file.
        out_indices (Sequence[int]): Blocks whose outputs are returned;
            negative indices count from the end. One index returns a tensor
            ``(N, C, T, H, W)``, several a tuple. Defaults to ``(-1, )``.
        frozen_stages (int): Blocks ``0 .. frozen_stages`` are frozen (eval
            mode, no gradient); -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep norm layers in eval mode while training.
        with_cp (bool): Gradient checkpointing of each unit (saves memory,
            costs a second forward).
        zero_init_residual (bool): Zero-init the last norm of every unit
            with an identity shortcut, so that it starts as the identity.
        conv_cfg (dict): Conv layer config. Defaults to ``dict(type='Conv3d')``.
        norm_cfg (dict): Norm layer config. Defaults to
            ``dict(type='BN3d', requires_grad=True)``.
        act_cfg (dict): Activation of blocks without their own ``act``.
            Defaults to ``dict(type='ReLU', inplace=True)``.
        channels_last (bool): Keep weights and activations in the
            ``channels_last_3d`` memory format. About 2x faster training of
            E3D-M on CPU (``bench/backbone_speed.py``); measure before using
            it on a GPU. The tools turn it off for DDP over gloo, where it
            made a rank abort now and then. Defaults to False.
        init_cfg (dict | list[dict], optional): mmengine init config, e.g.
            ``dict(type='Pretrained', checkpoint='x.pth', prefix='backbone.')``;
            applied after the default Kaiming / constant init.
    """

    def __init__(self,
                 arch: Optional[str] = None,
                 structure: Optional[Sequence[dict]] = None,
                 structure_file: Optional[str] = None,
                 out_indices: Sequence[int] = (-1, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 zero_init_residual: bool = True,
                 conv_cfg: dict = dict(type='Conv3d'),
                 norm_cfg: dict = dict(type='BN3d', requires_grad=True),
                 act_cfg: dict = dict(type='ReLU', inplace=True),
                 channels_last: bool = False,
                 init_cfg: Optional[Union[dict, list]] = None):
        super().__init__(init_cfg=init_cfg)
        if arch is None and structure is None and structure_file is None:
            arch = 'E3D-M'
        self.arch = arch
        self.structure = resolve_structure(arch, structure, structure_file)
        num_blocks = len(self.structure)

        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        normalized = []
        for index in out_indices:
            if not -num_blocks <= index < num_blocks:
                raise ValueError(
                    f'out_indices: {index} is out of range for a structure '
                    f'of {num_blocks} blocks (use 0..{num_blocks - 1} or '
                    'negative indices)')
            normalized.append(index % num_blocks)
        if not normalized or len(set(normalized)) != len(normalized):
            raise ValueError(
                f'out_indices must be non-empty and unique, got {out_indices}')
        self.out_indices = tuple(sorted(normalized))
        if not -1 <= frozen_stages < num_blocks:
            raise ValueError(
                f'frozen_stages must be in -1..{num_blocks - 1}, got '
                f'{frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.zero_init_residual = zero_init_residual
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg

        # Blocks after the last returned one would never get a gradient.
        self._last_index = self.out_indices[-1]
        self.blocks = nn.ModuleList(
            build_units(block, conv_cfg, norm_cfg, act_cfg, with_cp)
            for block in self.structure[:self._last_index + 1])
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last_3d)
        self._freeze_stages()

    @property
    def out_channels(self):
        """Channels of each returned feature map (one per out index)."""
        return [self.structure[i].out_channels for i in self.out_indices]

    @property
    def feat_dim(self):
        """Channels of the last returned feature map (a head's in_channels)."""
        return self.structure[self._last_index].out_channels

    def _freeze_stages(self):
        for block in self.blocks[:self.frozen_stages + 1]:
            block.eval()
            for param in block.parameters():
                param.requires_grad = False

    def init_weights(self):
        """Kaiming / constant init, then ``init_cfg`` (e.g. ``Pretrained``)."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                kaiming_init(m)
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)):
                constant_init(m, 1)
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, ResidualUnit) and m.has_shortcut:
                    constant_init(m.last_norm, 0)
        if self.init_cfg:
            MMLogger.get_current_instance().info(
                f'E3D: applying init_cfg {self.init_cfg}')
        super().init_weights()

    def forward(self, x):
        """Return the features of ``out_indices`` for ``x`` of NCTHW."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        outs = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.out_indices:
                outs.append(x)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def train(self, mode=True):
        """Switch mode, keeping frozen blocks (and norms if asked) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
