"""Cost and STEntr-Score of a structure, computed without building it.

Usage::

    python tools/analyze.py STRUCTURE [--image-size 224] [--frames 16]
        [--json] [--score-cfg KEY=VALUE ...]

STRUCTURE is a preset name (E3D-S, E3D-M, E3D-L, E3D-XS), a JSON structure
file (e.g. a search's ``best_structure.json``), a TinyNAS text file, or an
mmaction2 config (``.py``) with an E3D backbone: then the clip defaults to
the config's (``clip_len`` of its frame sampler, the crop of its validation
pipeline). The table
lists each block (the backbone's stages) with its output shape, FLOPs
(multiply-adds of the convs for one clip), parameters and conv layers.
``--json`` prints exactly one JSON object instead.
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
    return parser.parse_args(argv)


def _score_cfg(pairs, image_size, frames, num_stages):
    """STEntrScore config from ``KEY=VALUE`` pairs."""
    import ast
    cfg = dict(type='STEntrScore', image_size=image_size, frames=frames,
               stage_weights=(0, ) * (num_stages - 1) + (1, ))
    for pair in pairs:
        if '=' not in pair:
            raise ValueError(f"--score-cfg: expected KEY=VALUE, got '{pair}'")
        key, value = pair.split('=', 1)
        try:
            cfg[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            cfg[key] = value
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
        ]), structure


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
