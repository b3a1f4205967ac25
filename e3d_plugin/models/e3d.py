"""The E3D backbone for mmaction2 recognizers."""
import inspect
import os
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from mmaction.registry import MODELS
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, kaiming_init
from torch.nn.modules.batchnorm import _BatchNorm

from ..structure import resolve_structure
from .blocks import (ResidualUnit, StreamCache, build_units, run_layer,
                     stream_state_shapes)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _layer_check(name, cfg, build, optional=False):
    """Raise a one-line error unless ``cfg`` builds a layer that takes an
    ``(N, 8, T, H, W)`` tensor (so a 2D conv or norm is refused early)."""
    from mmengine.registry import MODELS as LAYERS
    if cfg is None and optional:
        return
    what = f'a dict with a registered layer type, e.g. {build}'
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'{name} must be {what}; got {cfg!r}')
    layer_type = cfg['type']
    if not inspect.isclass(layer_type) and (
            not isinstance(layer_type, str) or LAYERS.get(layer_type) is None):
        raise ValueError(
            f'{name}: unknown layer type {layer_type!r}; use {what}')
    try:
        # the trial layer's init must not draw from the global generator:
        # the backbone's weights under a seed stay what they were
        with torch.random.fork_rng(devices=[]):
            layer = _trial_layer(name, cfg)
        layer.eval()
        with torch.no_grad():
            layer(torch.zeros(1, 8, 1, 2, 2))
    except Exception as e:  # a wrong argument or a 2D layer, named below
        message = str(e).strip().splitlines()
        raise ValueError(
            f'{name}={cfg!r} does not build a layer for 3D (NCTHW) features '
            f'({type(e).__name__}: {message[-1] if message else ""}); use '
            f'{what}') from None


def _trial_layer(name, cfg):
    from mmcv.cnn import (build_activation_layer, build_conv_layer,
                          build_norm_layer)
    if name == 'conv_cfg':
        return build_conv_layer(cfg, 8, 8, (1, 1, 1))
    if name == 'norm_cfg':
        return build_norm_layer(cfg, 8)[1]
    return build_activation_layer(cfg)


def check_arguments(arch=None, structure=None, structure_file=None,
                    out_indices=(-1, ), frozen_stages=-1, norm_eval=False,
                    with_cp=False, zero_init_residual=True,
                    conv_cfg=dict(type='Conv3d'),
                    norm_cfg=dict(type='BN3d', requires_grad=True),
                    act_cfg=dict(type='ReLU', inplace=True),
                    channels_last=False, causal=False, init_cfg=None,
                    fast_depthwise=True, depthwise_fp32=False,
                    depthwise_triton=False):
    """Raise ``TypeError`` / ``ValueError`` naming the first :class:`E3D`
    argument of the wrong type or value, and what it accepts."""
    if arch is not None and not isinstance(arch, str):
        raise TypeError(
            f'arch must be a preset name (a str such as "E3D-S"), got '
            f'{type(arch).__name__}')
    if structure is not None and (
            not isinstance(structure, (list, tuple))
            or not all(isinstance(b, dict) or hasattr(b, '_fields')
                       for b in structure)):
        raise TypeError(
            'structure must be a list of block dicts (see '
            'e3d_plugin.structure), got '
            f'{type(structure).__name__}'
            + ('' if not isinstance(structure, (list, tuple)) else
               ' holding ' + ', '.join(sorted({type(b).__name__
                                               for b in structure}))))
    if structure_file is not None and not isinstance(
            structure_file, (str, os.PathLike)):
        raise TypeError(
            'structure_file must be a path (str) of a JSON or TinyNAS '
            f'structure file, got {type(structure_file).__name__}')
    indices = (out_indices, ) if _is_int(out_indices) else out_indices
    if not isinstance(indices, (list, tuple)) or not all(
            _is_int(i) for i in indices):
        raise TypeError(
            'out_indices must be an int or a list/tuple of ints (block '
            f'indices, negative from the end), got {out_indices!r}')
    if not _is_int(frozen_stages):
        raise TypeError(
            'frozen_stages must be an int (-1 freezes nothing), got '
            f'{frozen_stages!r}')
    for name, value in (('norm_eval', norm_eval), ('with_cp', with_cp),
                        ('zero_init_residual', zero_init_residual),
                        ('channels_last', channels_last),
                        ('causal', causal),
                        ('fast_depthwise', fast_depthwise),
                        ('depthwise_fp32', depthwise_fp32),
                        ('depthwise_triton', depthwise_triton)):
        if not isinstance(value, bool):
            raise TypeError(
                f'{name} must be True or False, got {value!r}')
    _layer_check('conv_cfg', conv_cfg, "dict(type='Conv3d')")
    _layer_check('norm_cfg', norm_cfg, "dict(type='BN3d')")
    _layer_check('act_cfg', act_cfg, "dict(type='ReLU')", optional=True)
    if init_cfg is not None and not isinstance(init_cfg, (dict, list)):
        raise TypeError(
            'init_cfg must be a dict or a list of dicts (mmengine init '
            f'configs), got {type(init_cfg).__name__}')


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
        causal (bool): Temporal padding only on the past side (``kt - 1``
            frames before, none after) and squeeze-excitation pooled as a
            running mean over time, so that the output at frame ``t``
            depends only on frames ``0..t``; enables :meth:`init_stream` /
            :meth:`stream_step`. Same convs, so same FLOPs, parameters and
            score. Defaults to False.
        channels_last (bool): On CPU, keep weights and activations in the
            ``channels_last_3d`` memory format: about 2x faster training of
            E3D-M there (``bench/backbone_speed.py``). On any other device
            the backbone keeps the contiguous layout whatever this says
            (moving the model there converts its weights back): on an H200,
            ``channels_last_3d`` made E3D-M's training 1.7x slower in fp32
            and 7.5x slower with AMP (``bench/gpu_check.sh``). So a recipe
            may turn it on for CPU users without slowing GPU users down. The tools turn it off for DDP over gloo, where it
            made a rank abort now and then. Defaults to False.
        fast_depthwise (bool): Depthwise convs (of ``dwbtn`` units, when
            ``conv_cfg`` is ``Conv3d``) compute their CPU backward with
            compiled loops (:class:`~e3d_plugin.models.depthwise.
            DepthwiseConv3d`, numba), 10-20x faster than PyTorch's there;
            the forward, the parameters and every other device are
            unchanged. No effect without numba. Defaults to True.
        depthwise_fp32 (bool): Under autocast (AMP), run the depthwise
            convs of ``dwbtn`` units (when ``conv_cfg`` is ``Conv3d``) in
            float32: input cast up, output cast back, every other layer as
            autocast runs it. A mixed-precision policy to weigh on a GPU
            (``bench/gpu_check.sh`` times AMP with and without it); it
            changes nothing outside autocast. Defaults to False.
        depthwise_triton (bool): On CUDA, run the depthwise convs of
            ``dwbtn`` units (when ``conv_cfg`` is ``Conv3d``) and their
            gradients with Triton kernels
            (:mod:`~e3d_plugin.models.triton_depthwise`, the extra
            ``triton``) instead of PyTorch's 5-D depthwise kernels, whose
            backward is slow; same parameters and state dict. Nothing
            changes on CPU, without triton, or while tracing, compiling or
            exporting. Defaults to False.
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
                 causal: bool = False,
                 init_cfg: Optional[Union[dict, list]] = None,
                 fast_depthwise: bool = True,
                 depthwise_fp32: bool = False,
                 depthwise_triton: bool = False):
        check_arguments(arch, structure, structure_file, out_indices,
                        frozen_stages, norm_eval, with_cp, zero_init_residual,
                        conv_cfg, norm_cfg, act_cfg, channels_last, causal,
                        init_cfg, fast_depthwise, depthwise_fp32,
                        depthwise_triton)
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
        self.causal = causal
        self.fast_depthwise = fast_depthwise
        self.depthwise_fp32 = depthwise_fp32
        self.depthwise_triton = depthwise_triton

        # Blocks after the last returned one would never get a gradient.
        self._last_index = self.out_indices[-1]
        self.blocks = nn.ModuleList(
            build_units(block, conv_cfg, norm_cfg, act_cfg, with_cp, causal,
                        fast_depthwise, depthwise_fp32, depthwise_triton)
            for block in self.structure[:self._last_index + 1])
        # A streaming state is keyed by the names of the modules keeping it.
        for name, module in self.named_modules():
            if hasattr(module, 'stream_key') and (
                    causal and getattr(module, 'causal', True)):
                module.stream_key = name
        self.channels_last = channels_last
        if channels_last:
            self._match_layout()
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

    def _apply(self, fn, *args, **kwargs):
        # .to(device) / .cuda() / .cpu() / to_empty(): the weights' layout
        # follows the device (see ``channels_last``)
        module = super()._apply(fn, *args, **kwargs)
        if getattr(self, 'channels_last', False):
            self._match_layout()
        return module

    def _match_layout(self):
        """Put every 5-D weight in the layout of its device:
        ``channels_last_3d`` on CPU, contiguous elsewhere."""
        for param in self.parameters():
            if param.dim() != 5:
                continue
            layout = (torch.channels_last_3d if param.device.type == 'cpu'
                      else torch.contiguous_format)
            if not param.is_contiguous(memory_format=layout):
                param.data = param.data.contiguous(memory_format=layout)

    def _layout_input(self, x):
        if self.channels_last and x.device.type == 'cpu':
            return x.contiguous(memory_format=torch.channels_last_3d)
        return x

    def forward(self, x):
        """Return the features of ``out_indices`` for ``x`` of NCTHW."""
        x = self._layout_input(x)
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

    def _check_stream(self):
        if not self.causal:
            raise ValueError(
                'streaming needs a causal backbone: build E3D with '
                'causal=True (model.backbone.causal=True)')

    def init_stream(self, batch_size, image_size=None, device=None,
                    dtype=None):
        """The state at the start of a stream, for :meth:`stream_step`.

        A dict of tensors keyed by module name: ``'frames'`` (frames seen,
        shape ``(1, )``; :meth:`stream_step` also takes one count per video,
        ``(N, )``, as :class:`~e3d_plugin.models.StaticStream` keeps them, so
        that videos restart one by one), for each temporal conv the last ``kt - 1`` input
        frames ``(N, C_in, kt - 1, H, W)``, for each squeeze-excitation the
        running sum of its pooled input ``(N, C, 1, 1, 1)``. Without
        ``image_size`` (``(H, W)`` of the frames) only ``'frames'`` is
        there and the buffers start as zeros at the first step; with it,
        every buffer is allocated now (zeros), e.g. to export the step.
        """
        self._check_stream()
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(
                f'batch_size must be a positive int, got {batch_size!r}')
        param = next(self.parameters())
        device = param.device if device is None else device
        dtype = param.dtype if dtype is None else dtype
        state = {'frames': torch.zeros(1, device=device, dtype=dtype)}
        if image_size is not None:
            for key, shape in self.stream_state_shapes(
                    batch_size, image_size).items():
                state[key] = torch.zeros(shape, device=device, dtype=dtype)
        return state

    def stream_state_shapes(self, batch_size, image_size):
        """Shapes of the buffers of a stream of ``image_size`` frames."""
        height, width = image_size
        shapes = {}
        for block in self.blocks:
            for unit in block:
                unit_shapes, (height, width) = stream_state_shapes(
                    unit, batch_size, height, width)
                shapes.update(unit_shapes)
        return shapes

    def stream_step(self, x, state):
        """Run a chunk of new frames ``x`` (``(N, C, t, H, W)``, any
        ``t >= 1``) through the causal backbone.

        Returns ``(feats, new_state)``: ``feats`` as :meth:`forward` returns
        them, for the ``t`` new frames only, equal to the whole clip's
        outputs at those frames; ``new_state`` is a new dict (``state`` is
        not changed). In eval mode, chunks of any size give the outputs of
        the whole clip.
        """
        self._check_stream()
        if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[2] < 1:
            raise ValueError(
                'stream_step expects a chunk of frames (N, C, t, H, W) with '
                f't >= 1, got {getattr(x, "shape", type(x).__name__)}')
        if not isinstance(state, dict) or 'frames' not in state:
            raise ValueError(
                "state must be the dict init_stream() or the previous "
                "stream_step() returned (it holds 'frames')")
        x = self._layout_input(x)
        cache = StreamCache(state, state['frames'])
        outs = []
        for index, block in enumerate(self.blocks):
            for unit in block:
                x = run_layer(unit, x, cache)
            if index in self.out_indices:
                outs.append(x)
        new_state = {'frames': state['frames'] + x.shape[2]}
        new_state.update(cache.new_state)
        feats = outs[0] if len(outs) == 1 else tuple(outs)
        return feats, new_state
