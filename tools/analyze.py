"""Cost and STEntr-Score of a structure, computed without building it.

Usage::

    python tools/analyze.py STRUCTURE [--image-size 224] [--frames 16]
        [--json] [--score-cfg KEY=VALUE ...]
        [--latency [--latency-cfg KEY=VALUE ...] [--measure-latency]]

STRUCTURE is a preset name (E3D-S, E3D-M, E3D-L, E3D-XS), a JSON structure
file (e.g. a search's ``best_structure.json``), a TinyNAS text file, or an
mmaction2 config (``.py``) with an E3D backbone (``--cfg-options`` applies
to it): then the clip defaults to the config's, read from its validation
pipeline (else test, else train): ``clip_len`` of its frame sampler
(``SampleFrames``, ``UniformSample``, ...) and the clip size its transforms
give (``CenterCrop`` / ``ThreeCrop`` / ``TenCrop`` / ``RandomCrop``, an int
or a ``(w, h)`` pair as mmaction2 takes it, or a ``Resize`` to a fixed
size). Where the config does not fix it (no crop after a short-side
``Resize``, no frame sampler) the report says which value it used in a
note. The table
lists each block (the backbone's stages) with its output shape, FLOPs
(multiply-adds of the convs for one clip), parameters, conv layers, its
largest feature map (``max_feature``, elements) and the activation memory a
training step keeps for its backward (``activation_bytes`` per clip,
float32; see :mod:`e3d_plugin.cost`); the totals follow. A config's
backbone ``with_cp`` and ``act_cfg`` (ReLU or SiLU) are taken into the
activation memory; other settings it does not model are named in a note.
``--json`` prints exactly one JSON object instead.

``--latency`` adds the latency predicted by the per-unit table the search's
latency budget uses (``LatencyTable`` arguments by ``--latency-cfg``, e.g.
``device=cuda num_threads=2 batch_size=1 table_file=t.json``; units the
table lacks are timed now), ``--measure-latency`` also times the whole
backbone end to end (steady state: at least 3 warm-up runs and 200 ms,
median of at least 10 samples).
"""
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


from e3d_plugin.launch import OneLineArgumentParser as _Parser  # noqa: E402


#: Largest clip side and length accepted (far above any video model's;
#: the cost is analytic, but ``--latency`` builds real tensors).
MAX_IMAGE_SIZE = 4096
MAX_FRAMES = 1024


def parse_args(argv=None):
    """Command-line arguments."""
    from e3d_plugin.launch import CfgOptionsAction
    parser = _Parser(
        description='FLOPs, params, layers, memory and STEntr-Score of a '
        'structure')
    parser.add_argument(
        'structure',
        help='preset name (E3D-S, E3D-M, E3D-L, E3D-XS), JSON file, TinyNAS '
        'file or mmaction2 config with an E3D backbone')
    parser.add_argument(
        '--image-size', type=int, nargs='+', default=None,
        help='clip height and width (one value for a square clip; default '
        '224, or the config\'s crop)')
    parser.add_argument(
        '--frames', type=int, default=None,
        help='clip length (default 16, or the config\'s clip_len)')
    parser.add_argument(
        '--json', action='store_true', help='print one JSON object')
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction,
        metavar='KEY=VALUE',
        help='with a config: override its settings, e.g. '
        'model.backbone.arch=E3D-S')
    parser.add_argument(
        '--score-cfg', nargs='+', default=[], metavar='KEY=VALUE',
        help='STEntrScore arguments, e.g. stage_weights="(0,0,0,1,1)" '
        'refine=False; image_size and frames default to the clip; the default '
        'weights count only the last stage')
    parser.add_argument(
        '--latency', action='store_true',
        help='add the latency predicted by the per-unit lookup table')
    parser.add_argument(
        '--latency-cfg', nargs='+', default=[], metavar='KEY=VALUE',
        help='LatencyTable arguments, e.g. device=cpu num_threads=2 '
        'batch_size=1 table_file=table.json')
    parser.add_argument(
        '--measure-latency', action='store_true',
        help='with --latency: also time the whole backbone end to end')
    return parser.parse_args(argv)


def _pairs(option, pairs):
    """``KEY=VALUE`` strings as a dict: values as Python literals, with
    ``true`` / ``false`` (any case) as booleans and ``none`` as None, so
    that ``refine=false`` means False; anything else stays a string."""
    import ast
    cfg = {}
    for pair in pairs:
        if '=' not in pair:
            raise ValueError(f"{option}: expected KEY=VALUE, got '{pair}'")
        key, value = pair.split('=', 1)
        if not key.isidentifier():
            raise ValueError(
                f"{option}: '{key}' is not an argument name (KEY=VALUE, "
                'e.g. refine=False)')
        word = value.strip().lower()
        if word in ('true', 'false', 'none'):
            cfg[key] = dict(true=True, false=False, none=None)[word]
            continue
        try:
            cfg[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            cfg[key] = value
    return cfg


def _check_arguments(option, cls, cfg):
    """Refuse keys that ``cls`` does not take, listing those it does."""
    import inspect
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to check against
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in cfg if k != 'type' and k not in params]
    if unknown:
        raise ValueError(
            f"{option}: {cls.__name__} takes no argument '{unknown[0]}'; it "
            f"takes {', '.join(params)}")


def _latency(args, structure, image_size, frames):
    """Predicted (and measured) latency of ``structure``, as report keys."""
    from e3d_plugin.nas.latency import build_latency_predictor, time_network
    table = build_latency_predictor(_pairs('--latency-cfg', args.latency_cfg))
    predicted = table.predict(structure, image_size, frames)
    table.save()
    out = dict(latency_ms=predicted, latency_table=table.table_file,
               latency_units_timed=table.num_measured,
               latency_settings=table.settings)
    if args.measure_latency:
        out['latency_measured_ms'] = time_network(structure, table,
                                                  image_size, frames)
    return out


def _score_cfg(pairs, image_size, frames, num_stages):
    """STEntrScore config from ``KEY=VALUE`` pairs."""
    cfg = dict(type='STEntrScore', image_size=image_size, frames=frames,
               stage_weights=(0, ) * (num_stages - 1) + (1, ))
    cfg.update(_pairs('--score-cfg', pairs))
    return cfg


#: ``act_cfg`` types whose activation memory the cost model counts.
_ACT_TYPES = {'ReLU': 'relu', 'SiLU': 'swish'}


def _memory_options(path, backbone, notes):
    """The cost model's ``act`` and ``with_cp`` for the activation memory
    of a config's backbone; a note names what it does not model."""
    with_cp = backbone.get('with_cp', False)
    if not isinstance(with_cp, bool):
        raise ValueError(f'{path}: model.backbone.with_cp must be True or '
                         f'False, got {with_cp!r}')
    act_cfg = backbone.get('act_cfg', dict(type='ReLU'))
    kind = act_cfg.get('type') if isinstance(act_cfg, dict) else None
    kind = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
    act = _ACT_TYPES.get(kind.split('.')[-1])
    if act is None:
        act = 'relu'
        notes['act_cfg'] = (
            f'activation_bytes counts ReLU where act_cfg is {act_cfg!r} '
            '(the cost model knows ReLU and SiLU)')
    elif act != 'relu' or with_cp:
        notes['memory'] = (
            'activation_bytes of the backbone as configured: '
            + ', '.join((['SiLU where a block sets no act'] if act != 'relu'
                         else []) + (['with_cp'] if with_cp else [])))
    if backbone.get('causal'):
        notes['causal'] = (
            'activation_bytes is that of the non-causal backbone; a causal '
            'one keeps more, the padded copies of its temporal convs\' '
            'inputs (E3D-M +20 %, E3D-XS +36 % at 8x41x41)')
    return act, with_cp


def _from_config(path, cfg_options=None):
    """Structure, clip ``(frames, (h, w))``, notes and memory options
    ``(act, with_cp)`` of an mmaction2 config with an E3D backbone."""
    from e3d_plugin.launch import LaunchError, config_clip, load_config
    from e3d_plugin.structure import StructureError, resolve_structure
    try:
        cfg = load_config(path, cfg_options)
    except LaunchError as e:
        raise StructureError(str(e)) from None
    model = cfg.get('model')
    backbone = model.get('backbone') if isinstance(model, dict) else None
    if backbone is None:
        raise StructureError(f'{path}: the config has no model.backbone; '
                             "give a config with backbone=dict(type='E3D')")
    kind = backbone.get('type')
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
    if name.split('.')[-1] != 'E3D':
        raise StructureError(
            f"{path}: model.backbone.type is {kind!r}, not 'E3D'")
    arch = backbone.get('arch')
    structure = backbone.get('structure')
    structure_file = backbone.get('structure_file')
    for key, value, types, what in (
            ('arch', arch, (str, ), 'a preset name'),
            ('structure', structure, (list, tuple), 'a list of blocks'),
            ('structure_file', structure_file, (str, os.PathLike),
             'a path')):
        if value is not None and not isinstance(value, types):
            raise StructureError(
                f'{path}: model.backbone.{key} must be {what}, got '
                f'{type(value).__name__}')
    if structure_file and not osp.isabs(structure_file) and not osp.exists(
            structure_file):
        structure_file = osp.join(osp.dirname(path), structure_file)
    if arch is None and structure is None and structure_file is None:
        arch = 'E3D-M'  # the backbone's own default
    try:
        structure = resolve_structure(arch, structure, structure_file)
    except StructureError as e:
        raise StructureError(f'{path}: model.backbone: {e}') from None
    frames, size, notes = config_clip(cfg)
    return structure, frames, size, notes, _memory_options(path, backbone,
                                                           notes)


def analyze(args):
    """Return the report as a dict."""
    from e3d_plugin.cost import analyze_cost
    from e3d_plugin.nas.score import STEntrScore
    from e3d_plugin.registry import SCORES, build
    from e3d_plugin.structure import load_structure

    notes = {}
    memory = ('relu', False)  # the backbone's defaults
    if args.structure.endswith('.py'):
        structure, frames, size, notes, memory = _from_config(
            args.structure, args.cfg_options)
    elif args.cfg_options:
        raise ValueError('--cfg-options goes with a config (.py), not with '
                         f"'{args.structure}'")
    else:
        structure, frames, size = load_structure(args.structure), 16, None
    if args.frames is not None:
        notes.pop('frames', None)
    else:
        args.frames = frames
    if args.image_size is not None:
        notes.pop('image_size', None)
        if any(v < 1 or v > MAX_IMAGE_SIZE for v in args.image_size) or len(
                args.image_size) > 2:
            raise ValueError(
                '--image-size takes one or two integers in 1..'
                f'{MAX_IMAGE_SIZE} (height, width), got '
                f"{' '.join(map(str, args.image_size))}")
        image_size = (args.image_size * 2)[:2]
    else:
        image_size = list(size or (224, 224))
    if not 1 <= args.frames <= MAX_FRAMES:
        raise ValueError(f'--frames must be an integer in 1..{MAX_FRAMES}, '
                         f'got {args.frames}')
    if max(image_size) > MAX_IMAGE_SIZE or args.frames > MAX_FRAMES:
        raise ValueError(
            f'the config\'s clip {args.frames}x{image_size[0]}x'
            f'{image_size[1]} exceeds {MAX_FRAMES} frames or '
            f'{MAX_IMAGE_SIZE} pixels; set --frames / --image-size')
    act, with_cp = memory
    report = analyze_cost(structure, tuple(image_size), args.frames, act=act,
                          with_cp=with_cp)
    num_stages = len(STEntrScore(image_size, args.frames,
                                 (1, )).stage_scores(structure))
    cfg = _score_cfg(args.score_cfg, image_size, args.frames, num_stages)
    score_cls = SCORES.get(cfg['type']) if isinstance(cfg['type'],
                                                      str) else None
    if score_cls is not None:
        _check_arguments('--score-cfg', score_cls, cfg)
    try:
        score = build(SCORES, cfg)
    except (KeyError, TypeError) as e:
        raise ValueError(f'--score-cfg: {e}') from None
    stentr = score(structure)
    if (args.latency_cfg or args.measure_latency) and not args.latency:
        raise ValueError('--latency-cfg and --measure-latency go with '
                         '--latency')
    latency = _latency(args, structure, image_size,
                       args.frames) if args.latency else {}
    return dict(
        structure=args.structure,
        image_size=image_size,
        frames=args.frames,
        flops=report.flops,
        params=report.params,
        layers=report.layers,
        max_feature=report.max_feature,
        activation_bytes=report.activation_bytes,
        memory_options=dict(act=act, with_cp=with_cp),
        stentr=stentr,
        score_cfg={k: v for k, v in cfg.items()},
        output_shape=list(report.blocks[-1].out_shape),
        notes=list(notes.values()),
        blocks=[
            dict(index=b.index, kind=b.kind, out_shape=list(b.out_shape),
                 flops=b.flops, params=b.params, layers=b.layers,
                 max_feature=b.max_feature,
                 activation_bytes=b.activation_bytes)
            for b in report.blocks
        ], **latency), structure


def format_table(result, structure):
    """A human-readable table of the report."""
    height, width = result['image_size']
    lines = [
        f"{result['structure']}: clip {result['frames']}x{height}x{width}",
        *(f'note: {note}' for note in result.get('notes', ())),
        f"{'block':>5}  {'kind':<6} {'L':>3}  {'output (CxTxHxW)':<18} "
        f"{'GFLOPs':>9} {'params (M)':>11} {'layers':>7} "
        f"{'max feat (M)':>12} {'act. (MiB)':>10}"
    ]
    for row, block in zip(result['blocks'], structure):
        shape = 'x'.join(str(v) for v in row['out_shape'])
        lines.append(
            f"{row['index']:>5}  {row['kind']:<6} {block.depth:>3}  "
            f"{shape:<18} {row['flops'] / 1e9:>9.4f} "
            f"{row['params'] / 1e6:>11.4f} {row['layers']:>7} "
            f"{row['max_feature'] / 1e6:>12.4f} "
            f"{row['activation_bytes'] / 2**20:>10.2f}")
    lines.append(
        f"{'total':>5}  {'':<6} {'':>3}  {'':<18} "
        f"{result['flops'] / 1e9:>9.4f} {result['params'] / 1e6:>11.4f} "
        f"{result['layers']:>7} {result['max_feature'] / 1e6:>12.4f} "
        f"{result['activation_bytes'] / 2**20:>10.2f}")
    kind = result['score_cfg'].get('type')
    if kind in ('STEntrScore', 'e3d_plugin.STEntrScore'):
        lines.append(
            f"STEntr-Score: {result['stentr']:.10f} "
            f"(stage weights {tuple(result['score_cfg']['stage_weights'])}"
            f", refine={result['score_cfg'].get('refine', True)})")
    else:  # a score of the zoo (the 'stentr' key holds its value)
        lines.append(f"{kind}: {result['stentr']:.10f}")
    if 'latency_ms' in result:
        settings = result['latency_settings']
        line = (f"Latency: {result['latency_ms']:.2f} ms predicted")
        if 'latency_measured_ms' in result:
            line += f", {result['latency_measured_ms']:.2f} ms measured"
        line += (f" (batch {settings['batch_size']}, {settings['device']} "
                 f"{settings['device_name']}, {settings['num_threads']} "
                 f"threads; table {result['latency_table']}, "
                 f"{result['latency_units_timed']} units timed now)")
        lines.append(line)
    return '\n'.join(lines)


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    from e3d_plugin.launch import LaunchError
    from e3d_plugin.structure import StructureError
    try:
        result, structure = analyze(args)
    except (StructureError, ValueError, LaunchError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result, structure))
    return 0


if __name__ == '__main__':
    sys.exit(main())
