"""The proxy zoo: zero-cost scores of a structure beside STEntr-Score.

Each is a registered score (``SCORES``), usable as ``score=dict(type=...)``
in a search config and as a proxy of the rank study
(:data:`~e3d_plugin.study.proxies.NETWORK_PROXIES`). Higher is better for
all of them.

Cost as a score, from :func:`~e3d_plugin.cost.compute_cost` at the score's
clip (a search maximising FLOPs under its budget is the natural baseline):
:class:`FlopsScore`, :class:`ParamsScore`, :class:`LayersScore`.

Network-based, in their 3D form: :class:`ZenScore` (Zen-NAS),
:class:`NASWOTScore`, :class:`SynFlowScore`, :class:`GradNormScore` and
:class:`ZiCoScore`. Each builds the real :class:`~e3d_plugin.models.E3D`
backbone of the structure (float32 on the CPU, ``fast_depthwise=False``,
``zero_init_residual=False`` so that no residual branch starts silenced),
with a linear head over the globally pooled output where a loss is needed,
and runs it on random clips of ``batch_size x 3 x frames x H x W``. Every
repeat ``r`` seeds PyTorch's generator with ``(seed, r)`` (inside
:func:`torch.random.fork_rng`, so the caller's random state is untouched)
before the weights and the inputs are drawn: the value is a function of
the structure and the score's arguments alone, the same in a resumed
search, and every structure of a search or a study sees the same inputs.
The value is the mean over ``repeats``. Unless a method says otherwise the
weights are initialised as :meth:`E3D.init_weights` does (Kaiming normal,
fan-out; norms 1 and 0) and norms run in train mode (batch statistics).

A network score keeps its cost: ``last_ms`` (wall time of the last
structure it computed), ``total_ms`` and ``calls``; a value already
computed is remembered (``memo_size`` structures), so a search that meets a
structure again pays nothing.

Every argument is checked; a wrong type or value raises ValueError naming
the argument. The arguments only STEntrScore uses (``stage_weights``,
``refine``, ``temporal_coverage``) are accepted and ignored, so that a
search config swaps ``score.type`` alone; any other unknown argument is
refused.
"""
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from ..checks import check_int, check_number, image_hw
from ..cost import compute_cost, output_shape
from ..registry import SCORES
from ..structure import Structure, resolve_structure

#: Arguments of STEntrScore that every zoo score accepts and ignores.
IGNORED = ('stage_weights', 'refine', 'temporal_coverage')
#: Activation layers whose input signs make NASWOT's binary codes.
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Hardswish,
               nn.GELU)
#: Layers whose weights the gradient-based proxies sum over.
WEIGHTED = (nn.Conv3d, nn.Linear)


def as_structure(structure):
    """``structure`` as a :class:`~e3d_plugin.structure.Structure` (a
    search passes one; a list of block dicts is converted)."""
    if isinstance(structure, Structure):
        return structure
    return resolve_structure(structure=structure)


def _log(value):
    """``log(value)``, ``-inf`` for 0 (a degenerate network)."""
    return math.log(value) if value > 0 else -math.inf


def _refuse_unknown(owner, kwargs, takes):
    unknown = sorted(str(k) for k in kwargs if k not in IGNORED)
    if unknown:
        raise ValueError(
            f"{owner}: unknown argument '{unknown[0]}'; it takes {takes} "
            f'(and ignores {", ".join(IGNORED)})')


class _ZooScore:
    """What every zoo score shares: the clip, the argument checks, the
    settings and the repr."""

    #: Names of the arguments that define the value, in settings / repr
    #: order.
    ARGUMENTS = ('image_size', 'frames')
    #: Arguments that do not change the value (not in the settings).
    OTHER_ARGUMENTS = ()

    def _check_clip(self, image_size, frames, kwargs):
        name = type(self).__name__
        self.image_size = image_hw(image_size, name)
        self.frames = check_int(name, 'frames', frames, low=1)
        _refuse_unknown(name, kwargs,
                        ', '.join(self.ARGUMENTS + self.OTHER_ARGUMENTS))

    def settings(self):
        """The arguments of the score, JSON-ready (a search checkpoint
        compares them on resume)."""
        values = {key: getattr(self, key) for key in self.ARGUMENTS}
        values['image_size'] = list(self.image_size)
        return values

    def __repr__(self):
        arguments = ', '.join(f'{key}={getattr(self, key)!r}'
                              for key in self.ARGUMENTS)
        return f'{type(self).__name__}({arguments})'


class _CostScore(_ZooScore):
    """A field of :func:`~e3d_plugin.cost.compute_cost` as the score."""

    #: Index of the field in :class:`~e3d_plugin.cost.Cost`.
    FIELD = 0

    def __init__(self, image_size=224, frames=16, **kwargs):
        self._check_clip(image_size, frames, kwargs)

    def __call__(self, structure):
        """The cost field of ``structure`` at the score's clip."""
        return float(compute_cost(as_structure(structure), self.image_size,
                                  self.frames)[self.FIELD])


@SCORES.register_module()
class FlopsScore(_CostScore):
    """FLOPs (multiply-adds of the backbone's convs, see
    :mod:`e3d_plugin.cost`) at the clip ``frames x image_size`` as the
    score: a search with it finds the structure of the most FLOPs within
    the budgets, the baseline every training-free score has to beat.

    Args:
        image_size (int | tuple[int, int]): Clip height and width.
        frames (int): Clip length.
    """

    FIELD = 0


@SCORES.register_module()
class ParamsScore(_CostScore):
    """The backbone's parameter count (see :mod:`e3d_plugin.cost`) as the
    score; the clip arguments are those of :class:`FlopsScore` (parameters
    do not depend on them, but a config can swap the type alone)."""

    FIELD = 1


@SCORES.register_module()
class LayersScore(_CostScore):
    """The depth (convs on the main path, see :mod:`e3d_plugin.cost`) as
    the score; arguments as :class:`FlopsScore`."""

    FIELD = 2


# ----------------------------------------------------------------------
def kaiming_init(module):
    """Initialise as :meth:`E3D.init_weights` does: convs Kaiming normal
    (fan-out, ReLU gain), biases 0, norms weight 1 and bias 0; linear
    layers with PyTorch's default."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out',
                                        nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, _BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                m.reset_parameters()


def gaussian_init(module):
    """Zen-NAS's initialisation: conv and linear weights standard normal,
    biases 0, norms weight 1 and bias 0."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, WEIGHTED):
                nn.init.normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, _BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def remove_norms(module):
    """Replace every batch norm of ``module`` by the identity."""
    for name, child in list(module.named_children()):
        if isinstance(child, _BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            remove_norms(child)


def weighted_layers(*modules):
    """The conv and linear layers of ``modules``, in module order."""
    return [m for module in modules for m in module.modules()
            if isinstance(m, WEIGHTED)]


class _NetworkScore(_ZooScore):
    """A score that builds and runs the structure's network; see the module
    docstring. Subclasses implement :meth:`measure` (one repeat)."""

    ARGUMENTS = ('image_size', 'frames', 'batch_size', 'repeats', 'seed')
    OTHER_ARGUMENTS = ('memo_size', 'threads')
    #: The least batch the method is defined for.
    MIN_BATCH = 1
    #: Whether norms run in train mode (then a feature map of one value per
    #: channel cannot be normalised).
    BATCH_NORM = True

    def _check_common(self, image_size, frames, batch_size, repeats, seed,
                      memo_size, threads, kwargs):
        name = type(self).__name__
        self._check_clip(image_size, frames, kwargs)
        self.threads = check_int(name, 'threads', threads, low=0, high=1024)
        if 'batch_size' in self.ARGUMENTS:
            self.batch_size = check_int(name, 'batch_size', batch_size,
                                        low=self.MIN_BATCH, high=4096)
        self.repeats = check_int(name, 'repeats', repeats, low=1, high=1000)
        self.seed = check_int(name, 'seed', seed, low=0, high=2**31 - 1)
        self.memo_size = check_int(name, 'memo_size', memo_size, low=0)
        self._memo = {}
        self.last_ms = None
        self.total_ms = 0.0
        self.calls = 0

    def repeat_seed(self, repeat):
        """The generator seed of repeat ``repeat``."""
        return self.seed * 1000 + repeat

    def input_shape(self, structure, batch=None):
        """``(N, C, T, H, W)`` of the random clips."""
        height, width = self.image_size
        return (self.batch_size if batch is None else batch,
                structure.in_channels, self.frames, height, width)

    def backbone(self, structure):
        """The structure's E3D backbone, float32, on the CPU."""
        from ..models.e3d import E3D
        return E3D(structure=structure, fast_depthwise=False,
                   zero_init_residual=False).float()

    def head(self, structure, num_classes):
        """A linear classifier over the pooled backbone output."""
        return nn.Linear(structure.out_channels, num_classes)

    @staticmethod
    def logits(backbone, head, x):
        """The head over the backbone's globally pooled output."""
        return head(backbone(x).mean((2, 3, 4)))

    def _check_sizes(self, structure):
        if not self.BATCH_NORM:
            return
        _, frames, height, width = output_shape(structure, self.image_size,
                                                self.frames)
        batch = getattr(self, 'batch_size', 1)
        if batch * frames * height * width < 2:
            raise ValueError(
                f'{type(self).__name__}: the last feature map of the '
                f'structure is {frames}x{height}x{width} at image_size '
                f'{self.image_size}: with batch_size {batch} its batch '
                'norm sees one value per channel; raise batch_size or '
                'image_size')

    def __call__(self, structure):
        """The mean of :meth:`measure` over the repeats (a float)."""
        structure = as_structure(structure)
        value = self._memo.get(structure)
        if value is not None:
            return value
        self._check_sizes(structure)
        start = time.perf_counter()
        values = []
        threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.random.fork_rng(devices=[]):
                for repeat in range(self.repeats):
                    torch.manual_seed(self.repeat_seed(repeat))
                    values.append(float(self.measure(structure)))
        finally:
            if self.threads:
                torch.set_num_threads(threads)
        value = sum(values) / len(values)  # -inf stays -inf
        elapsed = (time.perf_counter() - start) * 1000
        self.last_ms = elapsed
        self.total_ms += elapsed
        self.calls += 1
        if self.memo_size:
            if len(self._memo) >= self.memo_size:
                self._memo.clear()
            self._memo[structure] = value
        return value

    def measure(self, structure):
        """One repeat's value (the generator is seeded already)."""
        raise NotImplementedError


@SCORES.register_module()
class ZenScore(_NetworkScore):
    """Zen-Score (Lin et al., "Zen-NAS: A Zero-Shot NAS for
    High-Performance Image Recognition", ICCV 2021), of the 3D network.

    The backbone without head, its conv weights standard normal and norms in
    train mode, runs a clip ``x ~ N(0, 1)`` and ``x + mixup_gamma * e``
    (``e ~ N(0, 1)``); the score is ``log`` of the batch mean of
    ``sum |f(x) - f(x + mixup_gamma * e)|`` over the output map, plus
    ``sum over batch norms of log(sqrt(mean running_var))``. Every norm's
    momentum is 1, so its running variance is the (unbiased) variance of
    the last batch it saw, the perturbed one.

    Args:
        image_size (int | tuple[int, int]): Clip height and width.
        frames (int): Clip length.
        batch_size (int): Clips per batch.
        repeats (int): Draws (weights and inputs) averaged.
        seed (int): Seed of the draws (0 .. 2**31 - 1).
        mixup_gamma (float): Size of the perturbation (> 0).
        memo_size (int): Values remembered (0: none).
        threads (int): CPU threads while computing (0: as set). One by
            default: the networks are small, and the value then does not
            depend on the machine's core count.
    """

    ARGUMENTS = _NetworkScore.ARGUMENTS + ('mixup_gamma', )

    def __init__(self, image_size=224, frames=16, batch_size=4, repeats=1,
                 seed=0, mixup_gamma=0.01, memo_size=4096, threads=1,
                 **kwargs):
        self._check_common(image_size, frames, batch_size, repeats, seed,
                           memo_size, threads, kwargs)
        self.mixup_gamma = check_number(type(self).__name__, 'mixup_gamma',
                                        mixup_gamma, positive=True)

    def measure(self, structure):
        """One draw of the Zen-Score."""
        net = self.backbone(structure)
        gaussian_init(net)
        norms = [m for m in net.modules() if isinstance(m, _BatchNorm)]
        for norm in norms:
            norm.momentum = 1.0
        net.train()
        shape = self.input_shape(structure)
        x = torch.randn(shape)
        noise = torch.randn(shape)
        with torch.no_grad():
            clean = net(x)
            perturbed = net(x + self.mixup_gamma * noise)
            difference = (clean - perturbed).abs().sum((1, 2, 3, 4)).mean()
            value = _log(float(difference))
            for norm in norms:
                value += 0.5 * _log(float(norm.running_var.mean()))
        return value


@SCORES.register_module()
class NASWOTScore(_NetworkScore):
    """NASWOT (Mellor et al., "Neural Architecture Search without
    Training", ICML 2021), of the 3D network.

    Every activation unit of the network gives each clip of a batch a bit:
    whether its input is positive (the ReLU is active). With ``c_i`` the
    codes of clip ``i`` over all units (``N_A`` of them), the kernel
    ``K[i, j] = N_A - hamming(c_i, c_j)``; the score is ``log det K``
    (``-inf`` when two clips share their codes). Inputs ``N(0, 1)``.

    Args:
        image_size (int | tuple[int, int]): Clip height and width.
        frames (int): Clip length.
        batch_size (int): Clips per batch (>= 2: the kernel is
            ``batch_size x batch_size``).
        repeats (int): Draws averaged.
        seed (int): Seed of the draws.
        memo_size (int): Values remembered (0: none).
        threads (int): CPU threads while computing (0: as set). One by
            default: the networks are small, and the value then does not
            depend on the machine's core count.
    """

    MIN_BATCH = 2

    def __init__(self, image_size=224, frames=16, batch_size=8, repeats=1,
                 seed=0, memo_size=4096, threads=1, **kwargs):
        self._check_common(image_size, frames, batch_size, repeats, seed,
                           memo_size, threads, kwargs)

    def measure(self, structure):
        """One draw of the log-determinant."""
        net = self.backbone(structure)
        kaiming_init(net)
        net.train()
        batch = self.batch_size
        kernel = torch.zeros(batch, batch, dtype=torch.float64)

        def record(module, inputs):
            codes = inputs[0].detach().reshape(batch, -1) > 0
            # 0/1 sums are exact in float32 below 2**24 per layer
            dtype = torch.float32 if codes.shape[1] < 2**24 else (
                torch.float64)
            on = codes.to(dtype)
            off = 1 - on
            kernel.add_((on @ on.T + off @ off.T).double())

        hooks = [m.register_forward_pre_hook(record) for m in net.modules()
                 if isinstance(m, ACTIVATIONS)]
        try:
            with torch.no_grad():
                net(torch.randn(self.input_shape(structure)))
        finally:
            for hook in hooks:
                hook.remove()
        sign, logdet = torch.linalg.slogdet(kernel)
        return float(logdet) if sign > 0 else -math.inf


@SCORES.register_module()
class SynFlowScore(_NetworkScore):
    """SynFlow (Tanaka et al., "Pruning neural networks without any data
    by iteratively conserving synaptic flow", NeurIPS 2020), of the 3D
    network, as a network score (Abdelfattah et al., ICLR 2021).

    The backbone and a linear head, batch norms removed (the identity),
    every parameter replaced by its absolute value, in float64, run one
    all-ones clip; ``R`` is the sum of the logits. The score is the natural
    log of ``sum |theta * dR/dtheta|`` over the weights of every conv and
    linear layer (the log keeps the ranking and stays readable: the sum
    grows with the product of the layers' weights). Nothing but the weights
    is random, so there is no ``batch_size``.

    Args:
        image_size (int | tuple[int, int]): Clip height and width.
        frames (int): Clip length.
        repeats (int): Weight draws averaged.
        seed (int): Seed of the draws.
        num_classes (int): Outputs of the head.
        memo_size (int): Values remembered (0: none).
        threads (int): CPU threads while computing (0: as set). One by
            default: the networks are small, and the value then does not
            depend on the machine's core count.
    """

    ARGUMENTS = ('image_size', 'frames', 'repeats', 'seed', 'num_classes')
    BATCH_NORM = False

    def __init__(self, image_size=224, frames=16, repeats=1, seed=0,
                 num_classes=10, memo_size=4096, threads=1, **kwargs):
        self._check_common(image_size, frames, None, repeats, seed,
                           memo_size, threads, kwargs)
        self.num_classes = check_int(type(self).__name__, 'num_classes',
                                     num_classes, low=1, high=100000)

    def measure(self, structure):
        """One draw of the log synaptic flow."""
        net = self.backbone(structure)
        head = self.head(structure, self.num_classes)
        kaiming_init(net)
        remove_norms(net)
        net.double().eval()
        head.double()
        with torch.no_grad():
            for param in list(net.parameters()) + list(head.parameters()):
                param.abs_()
        x = torch.ones(self.input_shape(structure, batch=1),
                       dtype=torch.float64)
        self.logits(net, head, x).sum().backward()
        total = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            for layer in weighted_layers(net, head):
                if layer.weight.grad is not None:
                    total += (layer.weight * layer.weight.grad).abs().sum()
        return _log(float(total))


class _LossScore(_NetworkScore):
    """A score from the gradients of a cross-entropy loss over random
    labels (a linear head over the pooled backbone output)."""

    ARGUMENTS = _NetworkScore.ARGUMENTS + ('num_classes', )

    def _check_classes(self, num_classes):
        self.num_classes = check_int(type(self).__name__, 'num_classes',
                                     num_classes, low=2, high=100000)

    def draw_batch(self, structure):
        """One random batch: clips ``N(0, 1)`` and uniform labels."""
        x = torch.randn(self.input_shape(structure))
        labels = torch.randint(0, self.num_classes, (self.batch_size, ))
        return x, labels

    def batch_gradients(self, net, head, structure):
        """Backward of the loss of one random batch; the gradients (of this
        batch alone) stay in the layers."""
        x, labels = self.draw_batch(structure)
        for param in list(net.parameters()) + list(head.parameters()):
            param.grad = None
        F.cross_entropy(self.logits(net, head, x), labels).backward()


@SCORES.register_module()
class GradNormScore(_LossScore):
    """Grad-norm (Abdelfattah et al., "Zero-Cost Proxies for Lightweight
    NAS", ICLR 2021), of the 3D network: the sum over the conv and linear
    layers of the L2 norm of the weight gradient of a cross-entropy loss
    over one batch of random clips with random labels.

    Args:
        image_size (int | tuple[int, int]): Clip height and width.
        frames (int): Clip length.
        batch_size (int): Clips per batch.
        repeats (int): Draws averaged.
        seed (int): Seed of the draws.
        num_classes (int): Outputs of the head (>= 2).
        memo_size (int): Values remembered (0: none).
        threads (int): CPU threads while computing (0: as set). One by
            default: the networks are small, and the value then does not
            depend on the machine's core count.
    """

    def __init__(self, image_size=224, frames=16, batch_size=8, repeats=1,
                 seed=0, num_classes=10, memo_size=4096, threads=1,
                 **kwargs):
        self._check_common(image_size, frames, batch_size, repeats, seed,
                           memo_size, threads, kwargs)
        self._check_classes(num_classes)

    def measure(self, structure):
        """One draw of the summed gradient norms."""
        net = self.backbone(structure)
        head = self.head(structure, self.num_classes)
        kaiming_init(net)
        net.train()
        self.batch_gradients(net, head, structure)
        return math.fsum(float(layer.weight.grad.norm())
                         for layer in weighted_layers(net, head)
                         if layer.weight.grad is not None)


@SCORES.register_module()
class ZiCoScore(_LossScore):
    """ZiCo (Li et al., "ZiCo: Zero-shot NAS via Inverse Coefficient of
    Variation on Gradients", ICLR 2023), of the 3D network.

    The weight gradients of a cross-entropy loss are taken on ``batches``
    batches of random clips with random labels (same weights). For every
    conv and linear layer, with ``g`` one weight's gradients over the
    batches, ``s = sum over weights of mean|g| / std(g)`` (population
    std; weights whose gradient does not vary are left out); the score is
    ``sum over layers of log(s)`` (layers with ``s = 0`` add nothing).

    Args:
        image_size (int | tuple[int, int]): Clip height and width.
        frames (int): Clip length.
        batch_size (int): Clips per batch.
        batches (int): Batches the statistics are over (>= 2).
        repeats (int): Draws averaged.
        seed (int): Seed of the draws.
        num_classes (int): Outputs of the head (>= 2).
        memo_size (int): Values remembered (0: none).
        threads (int): CPU threads while computing (0: as set). One by
            default: the networks are small, and the value then does not
            depend on the machine's core count.
    """

    ARGUMENTS = _LossScore.ARGUMENTS + ('batches', )

    def __init__(self, image_size=224, frames=16, batch_size=4, batches=2,
                 repeats=1, seed=0, num_classes=10, memo_size=4096,
                 threads=1, **kwargs):
        self._check_common(image_size, frames, batch_size, repeats, seed,
                           memo_size, threads, kwargs)
        self._check_classes(num_classes)
        self.batches = check_int(type(self).__name__, 'batches', batches,
                                 low=2, high=1000)

    def measure(self, structure):
        """One draw of the summed log inverse coefficients of variation."""
        net = self.backbone(structure)
        head = self.head(structure, self.num_classes)
        kaiming_init(net)
        net.train()
        layers = weighted_layers(net, head)
        gradients = [[] for _ in layers]
        for _ in range(self.batches):
            self.batch_gradients(net, head, structure)
            for layer, seen in zip(layers, gradients):
                grad = layer.weight.grad
                seen.append(torch.zeros(layer.weight.numel(),
                                        dtype=torch.float64)
                            if grad is None else
                            grad.detach().reshape(-1).double())
        value = 0.0
        for seen in gradients:
            stacked = torch.stack(seen)
            std = stacked.std(0, unbiased=False)
            varies = std != 0
            total = float((stacked.abs().mean(0)[varies] /
                           std[varies]).sum())
            if total != 0:
                value += math.log(total)
        return value


__all__ = ['FlopsScore', 'ParamsScore', 'LayersScore', 'ZenScore',
           'NASWOTScore', 'SynFlowScore', 'GradNormScore', 'ZiCoScore',
           'IGNORED', 'as_structure', 'kaiming_init', 'gaussian_init',
           'remove_norms', 'weighted_layers']
