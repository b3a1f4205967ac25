"""Cost and STEntr-Score of a structure, computed without building it.

Usage::

    python tools/analyze.py STRUCTURE [--image-size 224] [--frames 16]
        [--json] [--score-cfg KEY=VALUE ...]
        [--latency [--latency-cfg KEY=VALUE ...] [--measure-latency]]

STRUCTURE is a preset name (E3D-S, E3D-M, E3D-L, E3D-XS), a JSON structure
file (e.g. a search's ``best_structure.json``), a TinyNAS text file, or an
mmaction2 config (``.py``) with an E3D backbone: then the clip defaults to
the config's (``clip_len`` of its frame sampler, the crop of its validation
pipeline). The table
lists each block (the backbone's stages) with its output shape, FLOPs
(multiply-adds of the convs for one clip), parameters and conv layers.
``--json`` prints exactly one JSON object instead.

``--latency`` adds the latency predicted by the per-unit table the search's
latency budget uses (``LatencyTable`` arguments by ``--latency-cfg``, e.g.
``device=cuda num_threads=2 batch_size=1 table_file=t.json``; units the
table lacks are timed now), ``--measure-latency`` also times the whole
backbone end to end (steady state: at least 3 warm-up runs and 200 ms,
median of at least 10 samples).
"""
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


from e3d_plugin.launch import OneLineArgumentParser as _Parser  # noqa: E402


def parse_args(argv=None):
    """Command-line arguments."""
    parser = _Parser(
        description='FLOPs, params, layers and STEntr-Score of a structure')
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
    """``KEY=VALUE`` strings as a dict (values as Python literals)."""
    import ast
    cfg = {}
    for pair in pairs:
        if '=' not in pair:
            raise ValueError(f"{option}: expected KEY=VALUE, got '{pair}'")
        key, value = pair.split('=', 1)
        try:
            cfg[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            cfg[key] = value
    return cfg


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


def _from_config(path):
    """Structure and clip ``(frames, crop)`` of an mmaction2 config."""
    from mmengine.config import Config

    from e3d_plugin.structure import StructureError, resolve_structure
    try:
        cfg = Config.fromfile(path)
    except Exception as e:  # mmengine raises many kinds; name the file
        raise StructureError(f"cannot load config '{path}': {e}") from None
    backbone = cfg.get('model', {}).get('backbone', {})
    if backbone.get('type') != 'E3D':
        raise StructureError(
            f"{path}: model.backbone.type is {backbone.get('type')!r}, not "
            "'E3D'")
    structure_file = backbone.get('structure_file')
    if structure_file and not osp.isabs(structure_file) and not osp.exists(
            structure_file):
        structure_file = osp.join(osp.dirname(path), structure_file)
    arch = backbone.get('arch')
    if not any(backbone.get(k) for k in ('arch', 'structure',
                                         'structure_file')):
        arch = 'E3D-M'  # the backbone's own default
    structure = resolve_structure(arch, backbone.get('structure'),
                                  structure_file)
    frames = crop = None
    for split in ('val', 'test', 'train'):
        loader = cfg.get(f'{split}_dataloader') or {}
        dataset = loader.get('dataset') or {}
        for step in dataset.get('pipeline') or []:
            if frames is None and step.get('clip_len'):
                frames = int(step['clip_len'])
            if crop is None and step.get('type') == 'CenterCrop':
                crop = int(step['crop_size'])
    return structure, frames, crop


def analyze(args):
    """Return the report as a dict."""
    from e3d_plugin.cost import analyze_cost
    from e3d_plugin.nas.score import STEntrScore
    from e3d_plugin.registry import SCORES, build
    from e3d_plugin.structure import load_structure

    if args.structure.endswith('.py'):
        structure, frames, crop = _from_config(args.structure)
    else:
        structure, frames, crop = load_structure(args.structure), None, None
    if args.frames is None:
        args.frames = frames or 16
    if args.image_size is None:
        args.image_size = [crop or 224]
    if any(v < 1 for v in args.image_size) or len(args.image_size) > 2:
        raise ValueError('--image-size takes one or two positive integers')
    if args.frames < 1:
        raise ValueError('--frames must be a positive integer')
    image_size = (args.image_size * 2)[:2]
    report = analyze_cost(structure, tuple(image_size), args.frames)
    num_stages = len(STEntrScore(image_size, args.frames,
                                 (1, )).stage_scores(structure))
    cfg = _score_cfg(args.score_cfg, image_size, args.frames, num_stages)
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
        stentr=stentr,
        score_cfg={k: v for k, v in cfg.items()},
        output_shape=list(report.blocks[-1].out_shape),
        blocks=[
            dict(index=b.index, kind=b.kind, out_shape=list(b.out_shape),
                 flops=b.flops, params=b.params, layers=b.layers)
            for b in report.blocks
        ], **latency), structure


def format_table(result, structure):
    """A human-readable table of the report."""
    height, width = result['image_size']
    lines = [
        f"{result['structure']}: clip {result['frames']}x{height}x{width}",
        f"{'block':>5}  {'kind':<6} {'L':>3}  {'output (CxTxHxW)':<18} "
        f"{'GFLOPs':>9} {'params (M)':>11} {'layers':>7}"
    ]
    for row, block in zip(result['blocks'], structure):
        shape = 'x'.join(str(v) for v in row['out_shape'])
        lines.append(
            f"{row['index']:>5}  {row['kind']:<6} {block.depth:>3}  "
            f"{shape:<18} {row['flops'] / 1e9:>9.4f} "
            f"{row['params'] / 1e6:>11.4f} {row['layers']:>7}")
    lines.append(
        f"{'total':>5}  {'':<6} {'':>3}  {'':<18} "
        f"{result['flops'] / 1e9:>9.4f} {result['params'] / 1e6:>11.4f} "
        f"{result['layers']:>7}")
    lines.append(f"STEntr-Score: {result['stentr']:.10f} "
                 f"(stage weights {tuple(result['score_cfg']['stage_weights'])}"
                 f", refine={result['score_cfg'].get('refine', True)})")
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
    try:
        from e3d_plugin.structure import StructureError
        result, structure = analyze(args)
    except (StructureError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result, structure))
    return 0


if __name__ == '__main__':
    sys.exit(main())
