"""Training and inference throughput of E3D-M vs X3D-M, interleaved.

Each backbone lives in its own worker process (so that peak memory is per
model), and the two are timed in turn, round after round, swapping which
goes first every round (A B, B A, ...): each round gives a ratio
``first / second`` of throughputs measured seconds apart, so that load from
other processes hits both sides of most rounds alike, and the spread of the
per-round ratios shows what the result is worth. The bench then answers
"is the first model no slower than the second per FLOP?" only when the
per-round GFLOPs/s ratios lie on one side of 1 in more rounds than chance
explains (a two-sided sign test at p < 0.05: 8 of 9 rounds, or all of 7);
otherwise it says UNDECIDED.

Per mode (``--modes``):

* ``train``: forward, ``output.float().mean()`` backward and an SGD step
  (momentum 0.9; with ``--amp`` in float16 through a ``GradScaler``, as
  mixed-precision training does), model in train mode;
* ``infer``: forward under ``torch.inference_mode()``, model in eval mode.

Each model runs ``--warmup`` untimed steps, then ``--rounds`` rounds of
``--steps`` timed steps (on CUDA the device is synchronised before and after
each step). Reported: clips/s per model (median over rounds, quartiles,
min..max), GFLOPs/s (clips/s x conv+linear multiply-adds of one clip, from
``mmengine.analysis.FlopAnalyzer``; for E3D also from ``compute_cost``),
the per-round ratios and their spread, and the verdict. Peak memory: the
process's peak resident set on CPU, ``torch.cuda.max_memory_allocated`` on
CUDA.

How close a step comes to the memory-bandwidth limit: each worker measures
its device's achievable bandwidth (the best of a few copies of a large
tensor, ``--bandwidth-mib``: 1 GiB on CUDA, 256 MiB on CPU by default, a
copy moving twice its size) and counts the bytes one step of its model must
move (:mod:`e3d_plugin.traffic`: every op's operands cross memory once,
activations at 4 bytes, 2 with ``--amp``; for E3D from its structure,
checked against the hook count of the built model, for X3D by hooks on the
built model's leaf modules, on the meta device). Reported per model and
mode: GB per step and where they go (conv / depthwise / norm+act / other /
optimizer update), the floor ``bytes / bandwidth`` and the fraction of the
limit reached, ``floor / median step time``.

``--e3d-options KEY=VALUE ...`` passes keyword arguments to ``E3D(arch=...,
**options)`` (values read with ``ast.literal_eval``; a value that is no
Python literal is a plain string); ``--compile`` wraps each model in
``torch.compile`` (``--compile-mode``) before the warm-up. ``--fuse-bn``
times the infer steps on a copy of each model whose batch norms are folded
into the convs before them (:func:`e3d_plugin.models.fuse_conv_bn`); its
bytes per step are still counted unfolded, so its fraction is of the
unfolded traffic.

``--profile`` then profiles ``--profile-steps`` more steps of each mode
with ``torch.profiler`` and reports the share of a step spent in 3D convs,
and in depthwise 3D convs (``groups == in_channels``), found among the
profiled ``aten::convolution`` / ``aten::convolution_backward`` ops by the
shapes of their input and weight (a depthwise weight is ``(C, 1, kt, k, k)``
for a ``C``-channel input), which works alike on CPU and CUDA. Their time is
the ops' CPU time on CPU and the time of the GPU kernels they launched on
CUDA; the share divides it by the step's wall time (and on CUDA also by the
GPU kernel time of the step). The count of depthwise ops per step is checked
against the model's depthwise ``Conv3d`` modules.

Usage::

    python bench/backbone_speed.py [--device cpu|cuda] [--amp]
        [--channels-last] [--modes train infer] [--frames 16 --size 112
        --batch 4] [--rounds 9 --steps 1 --warmup 3] [--threads N]
        [--profile [--profile-steps 3]] [--models E3D-M X3D-M]
        [--e3d-options KEY=VALUE ...] [--compile [--compile-mode MODE]]
        [--fuse-bn] [--bandwidth-mib N] [--json FILE]
"""
import argparse
import ast
import copy
import inspect
import os
import os.path as osp
import platform
import signal
import sys
import time
from contextlib import nullcontext

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Run as a script from the repository root or from bench/.
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import _interleave  # noqa: E402
from _args import (MAX_ROUNDS, MAX_VOXELS, bounded_int,  # noqa: E402
                   check_output_option, finite_float, write_json)
from e3d_plugin.launch import OneLineArgumentParser  # noqa: E402

MODELS = ('E3D-XS', 'E3D-S', 'E3D-M', 'E3D-L', 'X3D-M')
MODES = ('train', 'infer')
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune')
#: Bytes copied to measure the bandwidth, per device (MiB).
BANDWIDTH_MIB = {'cuda': 1024, 'cpu': 256}
#: Timed copies (after one warm-up), of which the fastest counts.
BANDWIDTH_REPEATS = 5
#: E3D arguments the bench sets itself (``--models`` names the preset).
E3D_RESERVED = ('arch', 'structure', 'structure_file')
#: Names of :data:`e3d_plugin.traffic.KINDS` in the report.
KIND_NAMES = dict(conv='conv', depthwise='depthwise', norm_act='norm+act',
                  other='other', update='update')
# Names of the range that wraps one profiled step.
STEP_RANGE = 'backbone_speed_step'
CONV_FORWARD = 'aten::convolution'
CONV_BACKWARD = 'aten::convolution_backward'
DEPTHWISE_BACKWARD = '_DepthwiseConv3dFunctionBackward'
# The Triton depthwise kernels' forward range and backward node
# (e3d_plugin.models.triton_depthwise.PROFILE_FORWARD; tested equal).
TRITON_FORWARD = 'e3d::depthwise_conv3d_triton'
TRITON_BACKWARD = '_DepthwiseConv3dTritonBackward'
DEPTHWISE_OPS = (DEPTHWISE_BACKWARD, TRITON_FORWARD, TRITON_BACKWARD)


def parse_args(argv=None):
    """Command-line options (shared by the parent and the workers)."""
    parser = OneLineArgumentParser(
        description=__doc__.splitlines()[0])
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--amp', action='store_true',
                        help='autocast to --amp-dtype (float16 on cuda, '
                        'bfloat16 on cpu by default)')
    parser.add_argument('--amp-dtype', choices=('float16', 'bfloat16'),
                        help='autocast dtype with --amp')
    parser.add_argument('--channels-last', action='store_true',
                        help='model and input in torch.channels_last_3d '
                        '(default: contiguous NCTHW)')
    parser.add_argument('--modes', nargs='+', choices=MODES,
                        default=list(MODES), help='what to time')
    parser.add_argument('--frames', type=bounded_int(1, 1024), default=16)
    parser.add_argument('--size', type=bounded_int(1, 1024), default=112,
                        help='clip height and width')
    parser.add_argument('--batch', type=bounded_int(1, 1024), default=4,
                        help='clips per step (batch x frames x size x size '
                        f'at most {MAX_VOXELS})')
    parser.add_argument('--rounds', type=bounded_int(1, MAX_ROUNDS),
                        default=9,
                        help='interleaved rounds per mode (a verdict needs '
                        f'at least {_interleave.min_rounds()})')
    parser.add_argument('--steps', type=bounded_int(1, 1000), default=1,
                        help='timed steps per model per round')
    parser.add_argument('--warmup', type=bounded_int(1, 1000), default=3,
                        help='untimed steps per model and mode first')
    parser.add_argument('--threads', type=bounded_int(1, 1024),
                        default=os.cpu_count(),
                        help='torch intra-op threads of each worker')
    parser.add_argument('--cudnn-benchmark', action='store_true',
                        help='torch.backends.cudnn.benchmark = True')
    parser.add_argument('--no-mkldnn', action='store_true',
                        help='torch.backends.mkldnn.enabled = False')
    parser.add_argument('--profile', action='store_true',
                        help='profile a few steps per mode: share of 3D '
                        'convs and of depthwise 3D convs')
    parser.add_argument('--profile-steps', type=bounded_int(1, 100),
                        default=3,
                        help='profiled steps per model and mode')
    parser.add_argument('--lr', type=finite_float(0.0), default=1e-4,
                        help='SGD learning rate of the train steps (small, '
                        'so that the weights stay where they started)')
    parser.add_argument('--models', nargs=2, default=['E3D-M', 'X3D-M'],
                        choices=MODELS, metavar='MODEL',
                        help='the two backbones; ratios are first / second '
                        f'(choices: {", ".join(MODELS)})')
    parser.add_argument('--e3d-options', nargs='+', default=[],
                        metavar='KEY=VALUE',
                        help='keyword arguments of the E3D models, e.g. '
                        'channels_last=True "act_cfg={\'type\': '
                        '\'SiLU\'}"; values are Python literals or plain '
                        'strings')
    parser.add_argument('--compile', action='store_true',
                        help='wrap each model in torch.compile before the '
                        'warm-up')
    parser.add_argument('--compile-mode', choices=COMPILE_MODES,
                        help="torch.compile mode with --compile (default: "
                        "'default')")
    parser.add_argument('--fuse-bn', action='store_true',
                        help='infer steps run a copy of each model with its '
                        'batch norms folded into the convs before them '
                        '(e3d_plugin.models.fuse_conv_bn); train steps are '
                        'unchanged')
    parser.add_argument('--bandwidth-mib', type=bounded_int(1, 1 << 16),
                        help='MiB copied to measure the memory bandwidth '
                        '(default: 1024 on cuda, 256 on cpu)')
    parser.add_argument('--json', metavar='FILE',
                        help='also write every figure to FILE as JSON')
    parser.add_argument('--worker', choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.models[0] == args.models[1]:
        parser.error('--models: give two different backbones')
    if args.amp_dtype and not args.amp:
        parser.error('--amp-dtype needs --amp')
    if args.compile_mode and not args.compile:
        parser.error('--compile-mode needs --compile')
    if args.compile and args.compile_mode is None:
        args.compile_mode = 'default'
    if args.bandwidth_mib is None:
        args.bandwidth_mib = BANDWIDTH_MIB[args.device]
    try:
        args.e3d_kwargs = check_e3d_options(
            parse_e3d_options(args.e3d_options))
    except ValueError as e:
        parser.error(f'--e3d-options: {e}')
    if args.amp and args.amp_dtype is None:
        args.amp_dtype = 'float16' if args.device == 'cuda' else 'bfloat16'
    voxels = args.batch * args.frames * args.size**2
    if voxels > MAX_VOXELS:
        parser.error(f'--batch x --frames x --size x --size is {voxels} '
                     f'voxels, more than the {MAX_VOXELS} a step takes; '
                     'lower --batch, --frames or --size')
    if not args.worker:
        check_output_option(parser, args.json)
    return args


def parse_e3d_options(items):
    """``{key: value}`` of ``KEY=VALUE`` strings; a value is read with
    ``ast.literal_eval`` (``True``, ``3``, ``(1, 2)``, ``{'type': 'SiLU'}``)
    or, if it is no Python literal, kept as a string. ValueError (one line)
    for an item without ``=`` or with a key that is no identifier, or a key
    given twice."""
    options = {}
    for item in items:
        key, sep, text = item.partition('=')
        key = key.strip()
        if not sep or not key.isidentifier():
            from e3d_plugin.checks import short_repr
            raise ValueError(f'{short_repr(item)} is not KEY=VALUE (e.g. '
                             'with_cp=True)')
        if key in options:
            raise ValueError(f'{key} is given twice')
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError,
                RecursionError):
            value = text
        options[key] = value
    return options


def check_e3d_options(options):
    """``options`` if :class:`~e3d_plugin.models.E3D` takes them: its
    signature names every key (whatever arguments it has today), and its
    ``check_arguments`` accepts the values it knows; ValueError (one line)
    naming the first that it does not."""
    if not options:
        return options
    from e3d_plugin.models import e3d
    accepted = [name for name in inspect.signature(e3d.E3D).parameters
                if name not in ('self', 'args', 'kwargs')]
    for key in options:
        if key in E3D_RESERVED:
            raise ValueError(f'{key} is set by --models (the preset of each '
                             'E3D model)')
        if key not in accepted:
            raise ValueError(
                f'E3D has no argument {key!r}; it takes '
                f'{", ".join(k for k in accepted if k not in E3D_RESERVED)}')
    check = getattr(e3d, 'check_arguments', None)
    if check is not None:
        known = inspect.signature(check).parameters
        try:
            check(**{k: v for k, v in options.items() if k in known})
        except (TypeError, ValueError) as e:
            raise ValueError(' '.join(str(e).split())) from None
    return options


def proc_status_kb(field):
    """A ``kB`` field of ``/proc/self/status`` (e.g. VmHWM), or None."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_kb():
    """Peak resident set of this process in kB (VmHWM, else getrusage)."""
    peak = proc_status_kb('VmHWM')
    if peak is None:
        import resource

        # Linux reports ru_maxrss in kB.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak


def build_model(name, e3d_options=None):
    """The backbone ``name`` as mmaction2 configs build it; an E3D one
    with the keyword arguments ``e3d_options``.

    Weights keep PyTorch's default init: ``init_weights`` would only log a
    page per parameter, and the values do not change the work done.
    """
    if name.startswith('E3D'):
        from e3d_plugin import E3D
        return E3D(arch=name, **(e3d_options or {}))
    from mmaction.models.backbones import X3D

    # As in configs/recognition/x3d/x3d_m_16x5x1_facebook-kinetics400-rgb.py.
    return X3D(gamma_w=1, gamma_b=2.25, gamma_d=2.2)


def is_depthwise(conv):
    """Whether an ``nn.Conv3d`` is depthwise: one input channel per group,
    with more than one input channel."""
    return conv.in_channels > 1 and conv.groups == conv.in_channels


def count_depthwise(model):
    """Number of depthwise ``nn.Conv3d`` modules of ``model``."""
    import torch.nn as nn
    return sum(1 for m in model.modules()
               if isinstance(m, nn.Conv3d) and is_depthwise(m))


def count_flops(model, frames, size):
    """Conv + linear multiply-adds of one clip by mmengine's FlopAnalyzer
    (on a float32 CPU copy: the count does not depend on the device)."""
    import torch
    from mmengine.analysis import FlopAnalyzer

    model = copy.deepcopy(model).float().cpu().to(
        memory_format=torch.contiguous_format)
    model.eval()
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, torch.randn(1, 3, frames, size, size))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        by_op = analyzer.by_operator()
    return by_op.get('conv', 0) + by_op.get('linear', 0)


def measure_bandwidth(device, mib, repeats=BANDWIDTH_REPEATS):
    """The device's achievable memory bandwidth in GB/s (10**9 bytes per
    second): the fastest of ``repeats`` copies of ``mib`` MiB of float32
    into another buffer, after one untimed copy; a copy reads and writes
    its size, so it moves ``2 x mib`` MiB. On CUDA a timed sample is ten
    copies in a row between two synchronisations."""
    import torch
    on_cuda = torch.device(device).type == 'cuda'
    count = mib * 2**20 // 4
    src = torch.ones(count, device=device)
    dst = torch.zeros(count, device=device)
    inner = 10 if on_cuda else 1

    def sync():
        if on_cuda:
            torch.cuda.synchronize(device)

    dst.copy_(src)
    best = float('inf')
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for _ in range(inner):
            dst.copy_(src)
        sync()
        best = min(best, (time.perf_counter() - start) / inner)
    del src, dst
    return 2 * count * 4 / best / 1e9


def step_traffic(name, model, args):
    """``{mode: figures}`` of the bytes one step of each of ``args.modes``
    moves (:mod:`e3d_plugin.traffic`; activations of 2 bytes with --amp,
    else 4; with --amp and ``E3D(depthwise_fp32=True)``, those of the
    depthwise convs 4, and their casts): ``total``, ``by_kind`` and the rest of
    :meth:`~e3d_plugin.traffic.Traffic.as_dict`, and ``source``. For E3D,
    the structure count where it equals the hook count of the built
    ``model`` (options such as ``frozen_stages`` change the work: then the
    hook count), for other models the hook count (meta device, cheap)."""
    from e3d_plugin.traffic import module_traffic, structure_traffic
    element = 2 if args.amp else 4
    # E3D(depthwise_fp32=True) computes its depthwise convs in float32
    # under autocast, with casts
    dw = 4 if args.amp and getattr(model, 'depthwise_fp32', False) else None
    shape = (args.batch, 3, args.frames, args.size, args.size)
    result = {}
    for mode in args.modes:
        hooked = module_traffic(model, shape, element, mode, dw)
        source = 'hooks'
        if name.startswith('E3D'):
            counted = structure_traffic(model.structure, args.size,
                                        args.frames, args.batch, element,
                                        mode, dw)
            if counted == hooked:
                source = 'structure'
            else:
                source = 'hooks, the structure count differs'
        result[mode] = dict(hooked.as_dict(), source=source,
                            element_bytes=element,
                            depthwise_bytes=dw or element)
    return result


def conv_kind(event):
    """``'depthwise'`` or ``'conv'`` for a profiled 3D convolution op
    (forward ``aten::convolution``: input, weight, ...; backward
    ``aten::convolution_backward``: grad_output, input, weight, ...), else
    None. Judged from the recorded shapes: a depthwise weight has one input
    channel per group, ``(C_out, 1, kt, k, k)``, for an input of more than
    one channel."""
    if event.name in DEPTHWISE_OPS:
        # E3D's depthwise convs with the numba CPU backward
        # (e3d_plugin.models.depthwise) or with the Triton kernels
        # (e3d_plugin.models.triton_depthwise): no aten conv op
        return 'depthwise'
    if event.name == CONV_FORWARD:
        index = 0
    elif event.name == CONV_BACKWARD:
        index = 1
    else:
        return None
    shapes = event.input_shapes
    if len(shapes) < index + 2:
        return None
    inp, weight = shapes[index], shapes[index + 1]
    if len(weight) != 5 or len(inp) != 5:
        return None
    return 'depthwise' if weight[1] == 1 and inp[1] > 1 else 'conv'


def _inside_conv(event):
    """Whether an enclosing op is itself a convolution op (counted there)."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name in (CONV_FORWARD, CONV_BACKWARD):
            return True
        parent = parent.cpu_parent
    return False


def conv_shares(events, steps, on_cuda):
    """Per-step figures of profiled ``events`` (``steps`` steps, each in a
    :data:`STEP_RANGE` range): wall ms of a step, ms in 3D convs and in
    depthwise 3D convs (CPU time of the ops on CPU, time of the kernels they
    launched on CUDA), number of depthwise forward / backward ops, and on
    CUDA the GPU kernel ms of a step."""
    def device_us(e):
        return getattr(e, 'device_time_total', None) or getattr(
            e, 'cuda_time_total', 0)

    def self_device_us(e):
        value = getattr(e, 'self_device_time_total', None)
        return value if value is not None else getattr(
            e, 'self_cuda_time_total', 0)

    from torch.autograd import DeviceType

    step_us = conv_us = dw_us = kernel_us = 0.0
    dw_forward = dw_backward = 0
    for e in events:
        # GPU kernels and annotations are listed too, and also counted in
        # the device time of the CPU-side ops that launched them.
        if e.device_type != DeviceType.CPU:
            continue
        if e.name == STEP_RANGE:
            step_us += e.cpu_time_total
            continue
        if on_cuda:
            kernel_us += self_device_us(e)
        kind = conv_kind(e)
        if kind is None or _inside_conv(e):
            continue
        spent = device_us(e) if on_cuda else e.cpu_time_total
        conv_us += spent
        if kind == 'depthwise':
            dw_us += spent
            if e.name in (CONV_FORWARD, TRITON_FORWARD):
                dw_forward += 1
            else:
                dw_backward += 1
    result = dict(
        step_ms=step_us / 1e3 / steps, conv_ms=conv_us / 1e3 / steps,
        dw_ms=dw_us / 1e3 / steps, dw_forward=dw_forward / steps,
        dw_backward=dw_backward / steps)
    if on_cuda:
        result['kernel_ms'] = kernel_us / 1e3 / steps
    return result


def profile_steps(step, n, sync, on_cuda):
    """Profile ``n`` calls of ``step`` (after one that the profiler warms up
    on), each in a :data:`STEP_RANGE` range closed after ``sync()``; return
    :func:`conv_shares` of them."""
    from torch.profiler import (ProfilerActivity, profile, record_function,
                                schedule)
    activities = [ProfilerActivity.CPU]
    if on_cuda:
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=True,
                 schedule=schedule(wait=0, warmup=1, active=n,
                                   repeat=1)) as prof:
        for _ in range(n + 1):
            sync()
            with record_function(STEP_RANGE):
                step()
                # The range's wall time then covers the GPU work.
                sync()
            prof.step()
    return conv_shares(prof.events(), n, on_cuda)


class Bench:
    """A worker's state: one model on its device, its optimizer and input,
    answering the parent's requests (see :func:`_interleave.serve`)."""

    def __init__(self, args):
        self.args = args
        self.model = None

    def handle(self, request):
        """Dispatch one request from the parent."""
        op = request['op']
        if op == 'ready':
            return self.ready()
        if op == 'steps':
            return self.steps(request['mode'], request['n'])
        if op == 'profile':
            return self.profile(request['mode'], request['n'])
        if op == 'finish':
            return self.finish()
        raise ValueError(f'unknown request {op!r}')

    def ready(self):
        """Import, build the model, input and optimizer on the device."""
        import torch

        import e3d_plugin  # noqa: F401  (bridges the mmaction2 wheel's gaps)

        args = self.args
        self.base_kb = proc_status_kb('VmRSS') or 0
        if args.device == 'cuda' and not torch.cuda.is_available():
            raise _interleave.WorkerError(
                f'--device cuda: torch {torch.__version__} sees no CUDA '
                'device here; use --device cpu', user_error=True)
        torch.set_num_threads(args.threads)
        if args.no_mkldnn:
            torch.backends.mkldnn.enabled = False
        if args.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(0)
        self.torch = torch
        self.device = torch.device(args.device)
        self.on_cuda = self.device.type == 'cuda'
        try:
            model = build_model(args.worker, args.e3d_kwargs)
        except (TypeError, ValueError) as e:
            raise _interleave.WorkerError(
                '--e3d-options: ' + ' '.join(str(e).split()),
                user_error=True) from None
        self.n_depthwise = count_depthwise(model)
        self.params = sum(p.numel() for p in model.parameters())
        # counted on the meta device, before the model moves anywhere
        self.traffic = step_traffic(args.worker, model, args)
        fmt = (torch.channels_last_3d if args.channels_last
               else torch.contiguous_format)
        self.module = model.to(self.device, memory_format=fmt)
        self.model = self.module
        if args.compile:
            self.model = torch.compile(self.module, mode=args.compile_mode)
        self.infer_model = None
        if args.fuse_bn:
            from e3d_plugin.models import fuse_conv_bn
            folded = copy.deepcopy(self.module)
            folded.eval()  # mmaction2's X3D.train returns None
            folded = fuse_conv_bn(folded)
            self.infer_model = (torch.compile(folded, mode=args.compile_mode)
                                if args.compile else folded)
        self.clips = torch.randn(
            args.batch, 3, args.frames, args.size, args.size,
            device=self.device).contiguous(memory_format=fmt)
        self.optimizer = torch.optim.SGD(
            self.module.parameters(), lr=args.lr, momentum=0.9)
        self.amp_dtype = getattr(torch, args.amp_dtype) if args.amp else None
        # float16 gradients underflow without loss scaling; bfloat16 keeps
        # float32's range and trains without it.
        self.scaler = None
        if self.amp_dtype == torch.float16:
            # torch.amp.GradScaler(device) is torch >= 2.3's spelling.
            self.scaler = (
                torch.amp.GradScaler(self.device.type)
                if hasattr(torch.amp, 'GradScaler')
                else torch.cuda.amp.GradScaler(enabled=self.on_cuda))
        info = dict(torch=torch.__version__, params=self.params,
                    n_depthwise=self.n_depthwise, traffic=self.traffic)
        if self.on_cuda:
            info['device_name'] = torch.cuda.get_device_name(self.device)
        return info

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return self.torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _sync(self):
        if self.on_cuda:
            self.torch.cuda.synchronize(self.device)

    def _train_step(self):
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = self.model(self.clips).float().mean()
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()

    def _infer_step(self):
        model = self.model if self.infer_model is None else self.infer_model
        with self.torch.inference_mode(), self._autocast():
            model(self.clips)

    def _step_fn(self, mode):
        self.model.train(mode == 'train')
        return self._train_step if mode == 'train' else self._infer_step

    def _oom(self, mode):
        return _interleave.WorkerError(
            f'{self.args.device} out of memory in a {mode} step at batch '
            f'{self.args.batch}, clip {self.args.frames}x{self.args.size}x'
            f'{self.args.size}; lower --batch or --size', user_error=True)

    def steps(self, mode, n):
        """Run ``n`` steps of ``mode``; return each one's seconds."""
        step = self._step_fn(mode)
        times = []
        try:
            for _ in range(n):
                self._sync()
                start = time.perf_counter()
                step()
                self._sync()
                times.append(time.perf_counter() - start)
        except self.torch.cuda.OutOfMemoryError:
            raise self._oom(mode) from None
        return dict(times=times)

    def profile(self, mode, n):
        """:func:`profile_steps` of ``n`` steps of ``mode``, with the
        model's number of depthwise convs."""
        try:
            result = profile_steps(self._step_fn(mode), n, self._sync,
                                   self.on_cuda)
        except self.torch.cuda.OutOfMemoryError:
            raise self._oom(mode) from None
        result['n_depthwise'] = self.n_depthwise
        return result

    def finish(self):
        """Peak memory, FLOPs per clip (and for E3D its cost model's)."""
        args = self.args
        result = dict(params=self.params)
        if self.on_cuda:
            cuda = self.torch.cuda
            result['peak_mb'] = cuda.max_memory_allocated(self.device) / 2**20
            result['reserved_mb'] = (
                cuda.max_memory_reserved(self.device) / 2**20)
        else:
            # Read before the FLOP count so that the peak is the steps' one.
            peak_kb = peak_rss_kb()
            result['peak_mb'] = peak_kb / 1024
            result['delta_mb'] = (peak_kb - self.base_kb) / 1024
        # after the peak memory was read: the copies' buffers are not the
        # steps' memory
        result['bandwidth_gbs'] = measure_bandwidth(self.device,
                                                    args.bandwidth_mib)
        result['bandwidth_mib'] = args.bandwidth_mib
        result['flops'] = count_flops(self.module, args.frames, args.size)
        if args.worker.startswith('E3D'):
            from e3d_plugin import compute_cost
            result['cost_flops'] = compute_cost(
                self.module.structure, args.size, args.frames).flops
        return result


def worker_main(args):
    """A worker process: serve the parent's requests for one model."""
    bench = Bench(args)
    return _interleave.serve(bench.handle)


def worker_argv(argv):
    """The parent's options for a worker, minus the model list and --json."""
    out, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        if arg == '--models':
            skip = 2
            continue
        if arg == '--json':
            skip = 1
            continue
        if arg.startswith('--models=') or arg.startswith('--json='):
            continue
        out.append(arg)
    return out


def header(args, ready, load):
    """The first line: what is compared, where, and how."""
    first, second = args.models
    where = (ready[first].get('device_name') or
             f'{os.cpu_count()} CPUs, threads={args.threads}')
    precision = f'AMP {args.amp_dtype}' if args.amp else 'fp32'
    layout = 'channels_last_3d' if args.channels_last else 'contiguous'
    compiled = (f', torch.compile({args.compile_mode})' if args.compile
                else '') + (', BN folded (infer)' if args.fuse_bn else '')
    options = (f'; E3D options {" ".join(args.e3d_options)}'
               if args.e3d_options else '')
    return (f'{first} vs {second} on {args.device} ({where}); torch '
            f'{ready[first]["torch"]}, python {platform.python_version()}; '
            f'clip {args.frames}x{args.size}x{args.size}, batch {args.batch};'
            f' {precision}, {layout}{compiled}'
            f'{", cudnn.benchmark" if args.cudnn_benchmark else ""}'
            f'{", mkldnn off" if args.no_mkldnn else ""}{options}; '
            f'{args.rounds} '
            f'rounds x {args.steps} steps per model after {args.warmup} '
            f'warm-up; load avg {load:.2f}')


def measure(args, argv, progress=None):
    """Start the two workers, run the interleaved rounds of every mode
    (and the profiles); return every figure as one dict. ``progress(line)``,
    if given, gets the header and one line per round as they come, so that
    a run stopped early still shows what it measured."""
    passed = worker_argv(argv)
    progress = progress or (lambda line: None)
    first, second = args.models

    def cmd_of(name):
        return [sys.executable, osp.abspath(__file__), '--worker', name
                ] + passed

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    workers, ready = _interleave.start_workers(args.models, cmd_of, cwd=ROOT)
    progress(header(args, ready, load_before))
    busy = int(load_before + 0.5)
    if args.device == 'cpu' and busy and args.threads + busy > (
            os.cpu_count() or 1):
        # seen here: 2 threads beside a busy loop on a 2-core machine gave
        # per-round ratios of 0.35..8.6; 1 thread on the free core 1.2..1.4
        progress(f'note: load average {load_before:.2f} on '
                 f'{os.cpu_count()} CPUs: {args.threads} threads per worker '
                 'compete with other processes and the per-round ratios '
                 'scatter; --threads set to the free cores gives steadier '
                 'ones')
    try:
        modes = {}
        for mode in args.modes:
            for w in workers.values():
                w.request(op='steps', mode=mode, n=args.warmup)

            def show(index, replies, mode=mode):
                clips = {name: args.batch * len(r['times']) / sum(r['times'])
                         for name, r in replies.items()}
                progress(f'  {mode} round {index + 1}/{args.rounds}: {first}'
                         f' {clips[first]:.2f}, {second} {clips[second]:.2f}'
                         f' clips/s; ratio {clips[first] / clips[second]:.2f}')

            rounds = _interleave.interleave(
                workers, args.rounds, dict(op='steps', mode=mode,
                                           n=args.steps), on_round=show)
            modes[mode] = dict(rounds=[
                {name: r[name]['times'] for name in args.models}
                for r in rounds])
            if args.profile:
                modes[mode]['profile'] = {
                    name: w.request(op='profile', mode=mode,
                                    n=args.profile_steps)
                    for name, w in workers.items()}
        finished = {name: w.request(op='finish')
                    for name, w in workers.items()}
    except BaseException:
        # Stopped or failed: do not wait for the other's current request.
        for w in workers.values():
            w.kill()
        raise
    finally:
        for w in workers.values():
            w.close()
    models = {name: dict(ready[name], **finished[name])
              for name in args.models}
    return dict(
        settings={k: v for k, v in vars(args).items()
                  if k not in ('worker', 'e3d_kwargs')},
        python=platform.python_version(), cpus=os.cpu_count(),
        load=[load_before, os.getloadavg()[0]],
        seconds=time.perf_counter() - started,
        models=models, modes=modes)


def summarise(data):
    """Add clips/s per round and model, the per-round ratios and their
    spreads, and the verdict, to each mode of ``data``."""
    first, second = data['settings']['models']
    batch = data['settings']['batch']
    gflops = {name: m['flops'] / 1e9 for name, m in data['models'].items()}
    for mode in data['modes'].values():
        clips = {name: [batch * len(r[name]) / sum(r[name])
                        for r in mode['rounds']]
                 for name in (first, second)}
        ratios = [a / b for a, b in zip(clips[first], clips[second])]
        flops_ratio = gflops[first] / gflops[second]
        gflops_ratios = [r * flops_ratio for r in ratios]
        mode['clips_s'] = {name: _interleave.spread(v)
                           for name, v in clips.items()}
        mode['clips_s_rounds'] = clips
        mode['ratio_rounds'] = ratios
        mode['ratio'] = _interleave.spread(ratios)
        mode['gflops_ratio_rounds'] = gflops_ratios
        mode['gflops_ratio'] = _interleave.spread(gflops_ratios)
        mode['verdict'] = _interleave.verdict(mode['gflops_ratio'])
    for mode_name, mode in data['modes'].items():
        memory = {}
        for name in (first, second):
            m = data['models'][name]
            if mode_name not in m.get('traffic', {}) or not m.get(
                    'bandwidth_gbs'):
                continue
            memory[name] = bandwidth_fraction(
                m['traffic'][mode_name]['total'], m['bandwidth_gbs'],
                [r[name] for r in mode['rounds']])
        if memory:
            mode['memory'] = memory
    return data


def bandwidth_fraction(total_bytes, bandwidth_gbs, rounds):
    """Bytes of a step, its floor at ``bandwidth_gbs`` and the fraction
    of the bandwidth limit reached: ``floor / median step time``, the
    median over ``rounds`` (each a list of step seconds) of each round's
    mean step."""
    import statistics
    from e3d_plugin.traffic import time_floor
    floor = time_floor(total_bytes, bandwidth_gbs)
    step = statistics.median(sum(r) / len(r) for r in rounds)
    return dict(bytes=total_bytes, bandwidth_gbs=bandwidth_gbs,
                floor_ms=floor * 1e3, step_ms=step * 1e3,
                fraction=floor / step)


def verdict_line(mode_name, mode, first, second):
    """One line: is ``first`` no slower than ``second`` per FLOP?"""
    stats = mode['gflops_ratio']
    answer = {'above': 'YES', 'below': 'NO', None: 'UNDECIDED'}[
        mode['verdict']]
    p = _interleave.verdict_basis(stats)[1]
    why = (f'GFLOPs/s ratio above 1 in {stats["above"]} of {stats["n"]} '
           f'rounds, below in {stats["below"]}; sign test p = {p:.3f}')
    if mode['verdict'] is None:
        why += f', not < {_interleave.ALPHA}'
        if stats['n'] < _interleave.min_rounds():
            why += (f'; a verdict needs at least {_interleave.min_rounds()} '
                    'rounds')
    return (f'verdict ({mode_name}): {first} no slower than {second} per '
            f'FLOP: {answer} ({why})')


def report(data):
    """Print the figures compactly."""
    s = data['settings']
    first, second = s['models']
    models = data['models']
    mem = 'peak MB (alloc/reserved)' if s['device'] == 'cuda' else (
        'peak MB (+MB)')
    print(f'{"model":<7}{"GFLOPs/clip":>12}{"params M":>10}'
          f'{"copy GB/s":>11}  {mem}')
    for name in (first, second):
        m = models[name]
        extra = (m['reserved_mb'] if 'reserved_mb' in m else m['delta_mb'])
        sep = '/' if 'reserved_mb' in m else ' +'
        bandwidth = (f'{m["bandwidth_gbs"]:>11.1f}' if 'bandwidth_gbs' in m
                     else f'{"-":>11}')
        print(f'{name:<7}{m["flops"] / 1e9:>12.3f}{m["params"] / 1e6:>10.3f}'
              f'{bandwidth}  {m["peak_mb"]:.0f}{sep}{extra:.0f}')
    if all('bandwidth_gbs' in models[name] for name in (first, second)):
        print(f'copy GB/s: each worker\'s memory bandwidth, best of '
              f'{BANDWIDTH_REPEATS} copies of {models[first]["bandwidth_mib"]}'
              ' MiB (bytes read + written)')
    for name in (first, second):
        m = models[name]
        if 'cost_flops' in m:
            same = 'matches' if m['cost_flops'] == m['flops'] else 'DIFFERS'
            print(f'{name}: compute_cost {m["cost_flops"] / 1e9:.6f} GFLOPs '
                  f'vs FlopAnalyzer conv+linear {m["flops"] / 1e9:.6f} '
                  f'-> {same}')
    for mode_name, mode in data['modes'].items():
        what = ('forward + backward + SGD step' if mode_name == 'train'
                else 'forward, inference_mode')
        print(f'[{mode_name}: {what}]')
        for name in (first, second):
            c = mode['clips_s'][name]
            gf = c['median'] * models[name]['flops'] / 1e9
            print(f'  {name:<7} clips/s {_interleave.format_spread(c)}; '
                  f'GFLOPs/s {gf:.3g}')
        rounds = ' '.join(f'{r:.2f}' for r in mode['ratio_rounds'])
        print(f'  {first}/{second} clips/s per round: {rounds}')
        print(f'  {first}/{second} clips/s   '
              f'{_interleave.format_spread(mode["ratio"])}')
        print(f'  {first}/{second} GFLOPs/s  '
              f'{_interleave.format_spread(mode["gflops_ratio"])}')
        print('  ' + verdict_line(mode_name, mode, first, second))
        for line in memory_lines(mode_name, mode, models, (first, second)):
            print('  ' + line)
        for name, p in mode.get('profile', {}).items():
            step_ms = p['step_ms']
            line = (f'  profile {name:<7} step {step_ms:.1f} ms: 3D convs '
                    f'{p["conv_ms"]:.1f} ms ({p["conv_ms"] / step_ms:.0%}), '
                    f'depthwise {p["dw_ms"]:.1f} ms '
                    f'({p["dw_ms"] / step_ms:.0%} of the step')
            if 'kernel_ms' in p and p['kernel_ms'] > 0:
                line += (f', {p["dw_ms"] / p["kernel_ms"]:.0%} of '
                         f'{p["kernel_ms"]:.1f} ms GPU kernel time')
            expected = p['n_depthwise']
            found = f'{p["dw_forward"]:g} fwd'
            if mode_name == 'train':
                found += f' + {p["dw_backward"]:g} bwd'
            ok = (p['dw_forward'] == expected and (
                mode_name != 'train' or p['dw_backward'] == expected))
            line += (f'); depthwise ops/step {found} of {expected} modules'
                     f'{"" if ok else " MISMATCH"}')
            print(line)
    if any('profile' in m for m in data['modes'].values()):
        print('profile: time of the ops on CPU, of the GPU kernels they '
              'launched on CUDA; step = wall time of a profiled step')
    print(f'load avg {data["load"][0]:.2f} before, {data["load"][1]:.2f} '
          f'after; {data["seconds"]:.0f} s')


def memory_lines(mode_name, mode, models, names):
    """Per model: bytes per step, the floor at the measured bandwidth and
    the fraction of the bandwidth limit reached; where the bytes go."""
    lines = []
    for name in names:
        figures = mode.get('memory', {}).get(name)
        if figures is None:
            continue
        traffic = models[name]['traffic'][mode_name]
        total = traffic['total']
        kinds = ', '.join(
            f'{KIND_NAMES.get(kind, kind)} {value / total:.0%}'
            for kind, value in traffic['by_kind'].items()
            if value or kind != 'update')
        lines.append(
            f'{name:<7} {total / 1e9:.4g} GB/step (counted from '
            f'{traffic["source"]}; {kinds}): floor '
            f'{_ms(figures["floor_ms"])} ms at '
            f'{figures["bandwidth_gbs"]:.1f} GB/s, median step '
            f'{_ms(figures["step_ms"])} ms: {figures["fraction"]:.1%} of the '
            'bandwidth limit')
    return lines


def _ms(value):
    """Milliseconds with three significant digits, without an exponent."""
    return f'{value:.3g}' if value < 100 else f'{value:.0f}'


def main(argv=None):
    """Measure both models interleaved and print the comparison."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    # A plain `kill` of the parent then also stops its workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if args.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            print(f'error: --device cuda: torch {torch.__version__} sees no '
                  'CUDA device here; use --device cpu', file=sys.stderr)
            return 2
    try:
        data = summarise(measure(
            args, argv, progress=lambda line: print(line, flush=True)))
    except _interleave.WorkerError as e:
        if e.user_error:
            print(f'error: {e}', file=sys.stderr)
            return 2
        raise
    report(data)
    if args.json:
        write_json(args.json, data)
    return 0


if __name__ == '__main__':
    sys.exit(main())
