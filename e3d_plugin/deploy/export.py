"""Export an E3D recognizer to ONNX and check it against PyTorch.

The exported graph is the whole recognizer for one ``NCTHW`` clip of raw
pixels (as the test pipeline gives them): the data preprocessor's
normalisation, the backbone and the head, ending in the head's class scores
(logits). ``torch.onnx.export`` runs with its TorchScript-based exporter
(``dynamo=False``), which needs only ``onnx``; onnxruntime runs the check.
"""
import copy
import math
import os
import os.path as osp
import tempfile
import time

import torch
import torch.nn as nn

from .errors import DeployError, check_positive_int

#: Most voxels (batch x T x H x W) of an input the deploy tools trace,
#: export or stream at once: 2**23, e.g. 1x32x512x512 or 8x16x256x256 (E3D-L
#: takes 1x16x312x312); more takes gigabytes in tracing and onnxruntime.
MAX_VOXELS = 2**23


def _one_line(error):
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


def load_config(config, cfg_options=None):
    """An mmengine ``Config`` from a path (or a ``Config``) with
    ``cfg_options`` merged in, with the tools' clear errors for a missing
    or unreadable file and for options that cannot land."""
    from mmengine.config import Config

    from ..launch import LaunchError, merge_cfg_options
    from ..launch import load_config as load_checked
    try:
        if isinstance(config, Config):
            cfg = merge_cfg_options(config, cfg_options)
        else:
            if not isinstance(config, (str, os.PathLike)):
                raise DeployError(
                    f'config must be a path, got {type(config).__name__}')
            if cfg_options:
                # a key the config lacks would be added silently: most
                # likely misspelt, and nothing here would read it
                keys = set(load_checked(os.fspath(config)).keys())
                unknown = sorted({str(key).split('.')[0]
                                  for key in cfg_options} - keys -
                                 {'custom_imports'})
                if unknown:
                    raise DeployError(
                        f"--cfg-options: the config has no key "
                        f"'{unknown[0]}'; its keys are "
                        f"{', '.join(sorted(keys))}")
            cfg = load_checked(os.fspath(config), cfg_options or None)
    except LaunchError as e:
        raise DeployError(str(e)) from None
    model = cfg.get('model')
    if not model or model.get('backbone', {}).get('type') != 'E3D':
        raise DeployError(
            f"{getattr(cfg, 'filename', config)}: model.backbone.type must "
            "be 'E3D'")
    return cfg


def _check_state_dict(model, state_dict, checkpoint):
    """One line naming the first key or shape that does not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [k for k in own if k in state_dict and tuple(
        own[k].shape) != tuple(state_dict[k].shape)]
    problems = []
    if wrong:
        key = wrong[0]
        problems.append(
            f'{len(wrong)} tensor(s) of another shape (first: {key} is '
            f'{tuple(state_dict[key].shape)} in the checkpoint, '
            f'{tuple(own[key].shape)} in the model)')
    if missing:
        problems.append(f'{len(missing)} missing (first: {missing[0]})')
    if unexpected:
        problems.append(
            f'{len(unexpected)} unexpected (first: {unexpected[0]})')
    if problems:
        raise DeployError(
            f"checkpoint '{checkpoint}' does not match the config's model: "
            + '; '.join(problems)
            + '; use the config the checkpoint was trained with')


def check_input_file(path, what):
    """Return ``path`` if it is an existing readable file, else raise
    :class:`DeployError` saying what it is instead (missing, a directory,
    empty, ...); ``what`` names it in the message."""
    from ..launch import LaunchError
    from ..launch import check_input_file as check
    try:
        return check(path, what)
    except LaunchError as e:
        raise DeployError(str(e)) from None


def check_output_file(path, option, inputs=(), foreign_ok=False):
    """Return ``path`` if an ONNX file can be written there, without
    creating anything; else raise :class:`DeployError`: empty, a directory,
    one of ``inputs`` (``(what, path)`` pairs the run reads), an existing
    file that is not ``.onnx`` (a config, a checkpoint, a video, notes...;
    unless ``foreign_ok``), or a place that cannot be created or
    written."""
    from ..launch import LaunchError, check_output_path
    try:
        check_output_path(path, option, inputs)
    except LaunchError as e:
        raise DeployError(str(e)) from None
    if not foreign_ok and osp.lexists(path) and not str(path).endswith(
            '.onnx'):
        raise DeployError(
            f"{option} '{path}' exists and is not an .onnx file; choose "
            'another file name')
    folder = osp.dirname(osp.abspath(path))
    if osp.isdir(folder):
        # a folder root may write by its modes and still not (/proc, /sys)
        try:
            handle, probe = tempfile.mkstemp(prefix='.write-probe.',
                                             dir=folder)
            os.close(handle)
            os.remove(probe)
        except OSError as e:
            raise DeployError(f"{option} '{path}' cannot be written: "
                              f'{e.strerror or e}') from None
    return path


def check_input_size(clip, batch=1):
    """Raise :class:`DeployError` unless ``batch`` clips of ``clip``
    (``(T, H, W)``) hold at most :data:`MAX_VOXELS` voxels."""
    voxels = batch * clip[0] * clip[1] * clip[2]
    if voxels > MAX_VOXELS:
        raise DeployError(
            f'{batch} clip(s) of {clip[0]}x{clip[1]}x{clip[2]} (T H W) are '
            f'{voxels} voxels, more than the {MAX_VOXELS} the export takes; '
            'lower the batch or the clip')


def write_onnx(path, write):
    """Call ``write(tmp)`` to write an ONNX file to a temporary name beside
    ``path``, check it with onnx's checker and rename it onto ``path``:
    whatever fails on the way leaves an existing ``path`` as it was, and
    no partial file or new folder behind."""
    directory = osp.dirname(osp.abspath(path))
    created = None
    probe = directory
    while not osp.exists(probe):
        created, probe = probe, osp.dirname(probe)
    tmp = None
    try:
        try:
            os.makedirs(directory, exist_ok=True)
            handle, tmp = tempfile.mkstemp(
                prefix=f'.{osp.basename(path)[:100]}.', suffix='.tmp',
                dir=directory)
            os.close(handle)
        except OSError as e:
            raise DeployError(
                f"cannot write '{path}': {e.strerror or e}") from None
        write(tmp)
        import onnx
        onnx.checker.check_model(onnx.load(tmp))
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise DeployError(
                f"cannot write '{path}': {e.strerror or e}") from None
        tmp = None
    finally:
        if tmp is not None and osp.exists(tmp):
            os.remove(tmp)
        if tmp is not None and created is not None:
            # the folders made for this file, innermost first, if empty
            folder = directory
            while True:
                try:
                    os.rmdir(folder)
                except OSError:
                    break
                if folder == created:
                    break
                folder = osp.dirname(folder)
    return path


def check_device(device, option='--device'):
    """Return ``device`` if it is ``cpu``, ``cuda`` or ``cuda:N`` of an
    existing GPU, else raise :class:`DeployError` naming ``option``."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ('cpu', 'cuda') or (
            parsed.type == 'cpu' and parsed.index not in (None, 0)):
        raise DeployError(f'{option} {device!r}: give cpu, cuda or cuda:N')
    if parsed.type == 'cuda':
        if not torch.cuda.is_available():
            raise DeployError(f'{option} {device}: CUDA is not available')
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise DeployError(
                f'{option} {device}: there are {count} CUDA device(s), '
                f'cuda:0..cuda:{count - 1}')
    return device


def load_checkpoint(model, checkpoint):
    """Load ``checkpoint`` into ``model`` strictly, with one clear line for
    a missing, unreadable or mismatching file."""
    from mmengine.runner import CheckpointLoader
    check_input_file(checkpoint, 'checkpoint')
    try:
        data = CheckpointLoader.load_checkpoint(
            os.fspath(checkpoint), map_location='cpu')
    except Exception as e:  # a damaged or refused file; name it
        raise DeployError(
            f"cannot read checkpoint '{checkpoint}': {type(e).__name__}: "
            f'{_one_line(e)}') from None
    state_dict = data.get('state_dict', data) if isinstance(data,
                                                            dict) else None
    if not isinstance(state_dict, dict):
        raise DeployError(
            f"checkpoint '{checkpoint}' holds no state_dict of tensors")
    state_dict = {
        k[len('module.'):] if k.startswith('module.') else k: v
        for k, v in state_dict.items()
    }
    _check_state_dict(model, state_dict, checkpoint)
    model.load_state_dict(state_dict, strict=True)
    return model


def build_recognizer(config, checkpoint=None, cfg_options=None,
                     device='cpu', streaming=False):
    """The recognizer of an E3D config, in eval mode, with ``checkpoint``
    loaded (strictly) when given. ``streaming=True`` gives it
    ``init_stream`` / ``stream_step`` (it needs ``backbone.causal``).
    Without a checkpoint the weights are the default initialisation."""
    from mmaction.registry import MODELS
    from mmengine.registry import init_default_scope

    from ..models.recognizer import as_streaming
    from ..structure import StructureError
    cfg = load_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    model_cfg = copy.deepcopy(cfg.model)
    backbone = model_cfg.backbone
    structure_file = backbone.get('structure_file')
    if (structure_file and isinstance(structure_file, str)
            and not osp.isabs(structure_file)
            and not osp.exists(structure_file) and cfg.filename):
        backbone['structure_file'] = osp.join(
            osp.dirname(cfg.filename), structure_file)
    # channels_last_3d is a training speed-up; inference here is in the
    # default layout, which onnxruntime gets anyway.
    backbone['channels_last'] = False
    try:
        model = MODELS.build(model_cfg)
        if streaming:
            model = as_streaming(model)
    except (ValueError, TypeError, KeyError, StructureError) as e:
        raise DeployError(f'model: {_one_line(e)}') from None
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    else:
        from mmengine.logging import MMLogger
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel('WARNING')  # one line per tensor otherwise
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
    model.cfg = cfg
    return model.to(device).eval()


def randomize_weights(recognizer, clip, seed=0):
    """Give an untrained recognizer weights whose outputs are not tiny, so
    that a parity check means something without a trained checkpoint:
    norm scales in ``[0.5, 1.5]`` and shifts around 0, the head's layers
    with unit-variance outputs, then each norm's running statistics set, in
    network order, to those of its input on one random clip of ``clip``
    size (the variance at least 0.1, so that no channel is amplified
    enormously)."""
    generator = torch.Generator().manual_seed(seed)
    norms = [
        m for m in recognizer.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(
                torch.rand(norm.weight.shape, generator=generator) + .5)
            norm.bias.copy_(
                torch.randn(norm.bias.shape, generator=generator) * .2)
        for module in recognizer.cls_head.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) /
                    module.in_features**0.5)

    def measure(norm, inputs):
        x = inputs[0]
        dims = [0] + list(range(2, x.dim()))
        norm.running_mean.copy_(x.mean(dims))
        # A floor: a channel that hardly varies on this clip would be
        # amplified enormously on another.
        norm.running_var.copy_(x.var(dims, unbiased=False).clamp(min=0.1))

    handles = [norm.register_forward_pre_hook(measure) for norm in norms]
    recognizer.eval()
    try:
        with torch.no_grad():
            RecognizerLogits(recognizer)(
                random_clips(clip, batch=2, count=1, seed=seed)[0])
    finally:
        for handle in handles:
            handle.remove()
    return recognizer


def recipe_clip(cfg):
    """``(frames, height, width)`` of the config's validation clip, and
    the frame interval of its sampling (1 when it samples uniformly)."""
    frames = crop = None
    interval = 1
    for split in ('val', 'test', 'train'):
        loader = cfg.get(f'{split}_dataloader') or {}
        for step in (loader.get('dataset') or {}).get('pipeline') or []:
            if frames is None and step.get('clip_len'):
                frames = int(step['clip_len'])
                interval = int(step.get('frame_interval', 1))
            if crop is None and step.get('type') == 'CenterCrop':
                size = step['crop_size']
                crop = (size, size) if isinstance(size, int) else tuple(
                    size[::-1])
    if frames is None or crop is None:
        raise DeployError(
            'the config names no clip_len or CenterCrop in its pipelines; '
            'give the clip size with --clip T H W')
    return (frames, crop[0], crop[1]), interval


def check_clip(clip):
    """Return ``clip`` as three positive ints ``(T, H, W)`` or raise."""
    if (not isinstance(clip, (list, tuple)) or len(clip) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool)
                       for v in clip) or min(clip) < 1):
        raise DeployError(
            f'clip must be three positive integers T H W, got {clip!r}')
    if max(clip) > 4096:
        raise DeployError(f'clip {tuple(clip)} is too large (at most 4096)')
    return tuple(clip)


class RecognizerLogits(nn.Module):
    """The recognizer as one function of a raw-pixel clip: normalisation,
    backbone, head; returns the class scores (logits) ``(N, classes)``."""

    def __init__(self, recognizer):
        super().__init__()
        self.recognizer = recognizer

    def forward(self, clip):
        """``clip``: ``(N, C, T, H, W)`` raw pixels."""
        recognizer = self.recognizer
        preprocessor = recognizer.data_preprocessor
        if getattr(preprocessor, 'to_rgb', False):
            clip = clip.flip(1)
        if getattr(preprocessor, '_enable_normalize', False):
            clip = (clip - preprocessor.mean) / preprocessor.std
        feats = recognizer.backbone(clip)
        if isinstance(feats, tuple):
            feats = feats[-1]
        return recognizer.cls_head(feats)


def random_clips(clip, batch=1, count=2, seed=0):
    """``count`` random raw-pixel clips (``0..255``) of ``clip`` size:
    smooth random patterns (noise at 1/8 of the size, upsampled) plus pixel
    noise, so that deep features differ from clip to clip as they do for
    videos, which white noise alone would not give."""
    generator = torch.Generator().manual_seed(seed)
    frames, height, width = clip
    coarse = (max(1, frames // 2), max(1, height // 8), max(1, width // 8))
    clips = []
    for _ in range(count):
        pattern = torch.rand((batch, 3) + coarse, generator=generator)
        pattern = torch.nn.functional.interpolate(
            pattern, size=tuple(clip), mode='trilinear', align_corners=False)
        noise = torch.rand((batch, 3) + tuple(clip), generator=generator)
        clips.append((pattern * 0.8 + noise * 0.2) * 255)
    return clips


def try_forward(wrapper, clip, batch=1):
    """Run the model once on zeros of ``clip`` size; one clear line if the
    network cannot take that size (or the input is larger than
    :data:`MAX_VOXELS`)."""
    check_input_size(clip, batch)
    try:
        with torch.no_grad():
            out = wrapper(torch.zeros((batch, 3) + tuple(clip)))
    except RuntimeError as e:
        raise DeployError(
            f'the network cannot take a clip of {tuple(clip)} (T, H, W): '
            f'{_one_line(e)}') from None
    if not torch.isfinite(out).all():
        raise DeployError(f'the output for a clip of {tuple(clip)} is not '
                          'finite')
    return out


def export_onnx(recognizer, path, clip, batch=1, dynamic_batch=False,
                opset=17):
    """Export the whole recognizer (see :class:`RecognizerLogits`) for
    ``(batch, 3) + clip`` inputs to ``path``; return the path."""
    clip = check_clip(clip)
    if not isinstance(opset, int) or not 11 <= opset <= 20:
        raise DeployError(f'opset must be an int in 11..20, got {opset!r}')
    check_positive_int('batch', batch)
    wrapper = RecognizerLogits(recognizer).eval()
    try_forward(wrapper, clip, batch)
    dynamic_axes = ({
        'clip': {0: 'batch'},
        'logits': {0: 'batch'}
    } if dynamic_batch else None)

    def write(target):
        with torch.no_grad():
            torch.onnx.export(
                wrapper, (torch.zeros((batch, 3) + clip), ), target,
                input_names=['clip'], output_names=['logits'],
                dynamic_axes=dynamic_axes, opset_version=opset,
                do_constant_folding=True, dynamo=False)

    return write_onnx(path, write)


def ort_session(path, threads=None):
    """An onnxruntime CPU session of ``path``."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(
        path, options, providers=['CPUExecutionProvider'])


def parity(session, recognizer, clips):
    """Compare onnxruntime with PyTorch on each clip: max abs difference
    of the logits (over all clips) and whether the top-1 classes agree."""
    wrapper = RecognizerLogits(recognizer).eval()
    worst = 0.0
    same_top1 = True
    for clip in clips:
        with torch.no_grad():
            expected = wrapper(clip).cpu()
        got = torch.from_numpy(
            session.run(['logits'], {'clip': clip.cpu().numpy()})[0])
        worst = max(worst, float((got - expected).abs().max()))
        same_top1 &= bool(
            torch.equal(got.argmax(1), expected.argmax(1)))
    return dict(max_abs_diff=worst, same_top1=same_top1,
                clips=len(clips))


def interleaved_latency(runners, rounds=10, warmup=2):
    """Time several ``name -> callable`` alternately, one call of each per
    round, so that a load swing hits all of them alike; return per-round
    milliseconds per name."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def summarize(values):
    """Median, min, max and relative spread (max / min - 1) of a list."""
    ordered = sorted(values)
    n = len(ordered)
    median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    spread = ordered[-1] / ordered[0] - 1 if ordered[0] > 0 else math.inf
    return dict(median=median, min=ordered[0], max=ordered[-1],
                spread=spread)


def ort_vs_torch_latency(session, recognizer, clip, rounds=10, warmup=2):
    """Interleaved onnxruntime vs PyTorch latency of one clip: per-round
    milliseconds and the per-round ratio onnxruntime / PyTorch."""
    wrapper = RecognizerLogits(recognizer).eval()
    x = clip.cpu()
    feed = {'clip': x.numpy()}

    def run_torch():
        with torch.no_grad():
            wrapper(x)

    times = interleaved_latency(
        dict(onnxruntime=lambda: session.run(['logits'], feed),
             pytorch=run_torch), rounds, warmup)
    ratios = [a / b for a, b in zip(times['onnxruntime'], times['pytorch'])]
    return dict(times=times, ratio=ratios)


__all__ = [
    'MAX_VOXELS', 'build_recognizer', 'randomize_weights', 'load_config',
    'load_checkpoint', 'recipe_clip', 'check_device', 'check_input_file',
    'check_output_file', 'check_input_size', 'write_onnx', 'check_clip',
    'RecognizerLogits', 'random_clips', 'export_onnx',
    'ort_session', 'parity', 'interleaved_latency', 'summarize',
    'ort_vs_torch_latency', 'try_forward'
]
