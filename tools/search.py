"""Search a 3D CNN that maximises the STEntr-Score under budgets.

    python tools/search.py CONFIG [--work-dir DIR] [--cfg-options k=v ...]
        [--resume] [--seed N] [--no-progress]

CONFIG (e.g. ``configs/search_e3d_m.py``) sets ``init_structure``,
``score``, ``space``, ``search`` (``EntropyEvolution`` arguments with the
``budgets``) and ``train_base`` (the mmaction2 recipe of the generated
training config). The work dir receives ``best_structure.json``,
``top_k.json``, ``search_summary.json``, ``search_curve.png``,
``e3d_searched.py`` (a ready-to-train mmaction2 config), ``search.log`` and
the checkpoint ``--resume`` continues from.

The work is the library's (:class:`~e3d_plugin.nas.EntropyEvolution` and
:func:`~e3d_plugin.nas.write_results`); this tool loads the config, checks
it, prints and exits. A bad input ends in one line ``error: ...`` and exit
code 2, before the work dir is touched where it can be checked first; the
log is appended to, and a work dir holding an unfinished search is refused
unless ``--resume`` continues it (resume refuses any changed setting that
defines the search, ``num_candidates`` included).

A *family* config (``configs/search_e3d_family.py``) sets only ``family``
(name -> search config, relative to it) and ``work_dir``: each member is
searched in turn, in one process, into ``WORK_DIR/<name>``, with the same
``--cfg-options`` / ``--seed`` / ``--resume``, and ``family_summary.json``
collects their summaries.
"""
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

REQUIRED_KEYS = ('init_structure', 'score', 'space', 'search')


from e3d_plugin.launch import OneLineArgumentParser as _Parser  # noqa: E402


def parse_args(argv=None):
    """Command-line arguments (a malformed one ends in one line, exit 2)."""
    from e3d_plugin.launch import CfgOptionsAction

    parser = _Parser(description='Training-free entropy search of E3D')
    parser.add_argument('config', help='search config file')
    parser.add_argument('--work-dir', help='where the results go')
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction,
        help='override config settings, e.g. search.num_candidates=20000')
    parser.add_argument(
        '--resume', action='store_true',
        help='continue from the checkpoint in the work dir')
    parser.add_argument('--seed', type=int, help='override search.seed')
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def _load(path, cfg_options=None):
    """The config at ``path`` with ``cfg_options`` merged in (a key the
    config lacks is refused)."""
    from e3d_plugin.launch import LaunchError, load_config
    from e3d_plugin.nas import SearchError
    try:
        return _merge(load_config(path), cfg_options)
    except LaunchError as e:
        raise SearchError(str(e)) from None


def _merge(cfg, cfg_options):
    """``cfg_options`` merged into the loaded ``cfg``, keys it has only."""
    from e3d_plugin.launch import LaunchError, merge_cfg_options
    from e3d_plugin.nas import SearchError
    try:
        return merge_cfg_options(cfg, cfg_options, known_keys_only=True)
    except LaunchError as e:
        raise SearchError(str(e)) from None


def _plain(value):
    """A ConfigDict / nested config value as plain dicts and lists."""
    if hasattr(value, 'to_dict'):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _check_config(cfg, config_path):
    """The required keys, each of the type it must have."""
    from e3d_plugin.nas import SearchError
    for key in REQUIRED_KEYS:
        if cfg.get(key) is None:
            raise SearchError(
                f"config {config_path} is missing the required key '{key}'")
    for key in ('score', 'space', 'search'):
        if not isinstance(cfg[key], dict):
            raise SearchError(
                f'{key} must be a dict (a config with a type), got '
                f'{cfg[key]!r}'[:200])
    if not isinstance(cfg.init_structure, (str, list, tuple)):
        raise SearchError(
            'init_structure must be a preset name, a structure file or a '
            f'list of block dicts, got {cfg.init_structure!r}'[:200])
    train_base = cfg.get('train_base')
    if train_base is not None and not isinstance(train_base, str):
        raise SearchError(
            f'train_base must be a config path, got {train_base!r}'[:200])


def run(args):
    """Search (one config, or each member of a family) and write the
    results; return the summary dict."""
    import e3d_plugin.nas  # noqa: F401  (registers all)
    cfg = _load(args.config)
    options = args.cfg_options or {}
    if cfg.get('family') is not None:
        # the rest of a family's options are its members' (checked as they
        # load)
        options = {k: v for k, v in options.items()
                   if k.startswith(('family', 'work_dir'))}
    cfg = _merge(cfg, options)
    work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    if cfg.get('family') is not None:
        return run_family(args, cfg, work_dir)
    return run_one(args, cfg, args.config, work_dir)


def _make_dirs(work_dir):
    from e3d_plugin.nas import SearchError
    if not isinstance(work_dir, str) or not work_dir:
        raise SearchError(f'work_dir must be a path, got {work_dir!r}')
    try:
        os.makedirs(work_dir, exist_ok=True)
    except OSError as e:
        raise SearchError(
            f'work dir {work_dir} cannot be created ({e.strerror}); choose '
            'another --work-dir') from None


def run_family(args, cfg, work_dir):
    """Search every member config of ``cfg.family`` (name -> config path,
    relative to the family config) into ``work_dir/<name>``, in one process
    (one start-up, one latency table per device); write
    ``family_summary.json``."""
    from e3d_plugin.nas import SearchError
    family = cfg.family
    if not isinstance(family, dict) or not family:
        raise SearchError(
            f'config {args.config}: family must be a non-empty dict of '
            'name -> search config path')
    folder = osp.dirname(osp.abspath(args.config))
    options = {k: v for k, v in (args.cfg_options or {}).items()
               if not k.startswith(('family', 'work_dir'))}
    members = {}
    for name, path in family.items():
        if not isinstance(path, str):
            raise SearchError(
                f'config {args.config}: family member {name!r} must be a '
                f'config path, got {path!r}')
        path = path if osp.isabs(path) else osp.join(folder, path)
        if not osp.isfile(path):
            raise SearchError(
                f'config {args.config}: family member {name!r}: no config '
                f'at {path}')
        member = _load(path, options or None)
        _check_config(member, path)
        members[name] = (path, member)
    summaries = {}
    for index, (name, (path, member)) in enumerate(members.items(), 1):
        print(f'[{index}/{len(members)}] {name}: {path}', file=sys.stderr,
              flush=True)
        summaries[name] = run_one(args, member, path,
                                  osp.join(work_dir, name))
    _make_dirs(work_dir)
    with open(osp.join(work_dir, 'family_summary.json'), 'w') as f:
        json.dump(summaries, f, indent=2)
    lines = [f"{'member':<10}{'best score':>12}{'GFLOPs':>9}{'params M':>10}"
             f"{'layers':>8}{'latency ms':>12}{'search s':>10}"]
    for name, summary in summaries.items():
        latency = summary.get('best_latency')
        lines.append(
            f"{name:<10}{summary['best_score']:>12.4f}"
            f"{summary['best_flops'] / 1e9:>9.3f}"
            f"{summary['best_params'] / 1e6:>10.3f}"
            f"{summary['best_layers']:>8}"
            f"{'-' if latency is None else f'{latency:.2f}':>12}"
            f"{summary['elapsed_s']:>10.1f}")
    print('\n'.join(lines) + f'\nresults in {work_dir}', flush=True)
    return summaries


def run_one(args, cfg, config_path, work_dir):
    """One search from a loaded config; write the results into
    ``work_dir``; return the summary dict."""
    from mmengine.logging import MMLogger

    from e3d_plugin.nas import write_results
    from e3d_plugin.nas.results import train_base_backbone
    from e3d_plugin.registry import SEARCHERS, build

    _check_config(cfg, config_path)
    search_cfg = _plain(cfg.search)
    search_cfg.setdefault('type', 'EntropyEvolution')
    if args.seed is not None:
        search_cfg['seed'] = args.seed
    train_base = cfg.get('train_base')
    if train_base:
        if not osp.isabs(train_base):
            train_base = osp.join(osp.dirname(osp.abspath(config_path)),
                                  train_base)
        train_base_backbone(train_base)  # fails now, not after the search
    # every check before the work dir is touched
    searcher = build(
        SEARCHERS, search_cfg,
        score=_plain(cfg.score),
        space=_plain(cfg.space),
        init_structure=_plain(cfg.init_structure),
        work_dir=work_dir,
        progress=not args.no_progress)
    _make_dirs(work_dir)
    # appended: a failing rerun keeps the log of the earlier run
    searcher.logger = MMLogger.get_instance(
        f'e3d_search_{time.time_ns()}',
        log_file=osp.join(work_dir, 'search.log'),
        log_level='INFO', file_mode='a')
    searcher.logger.info(
        f'searching with {config_path}: budgets {searcher.budgets}, '
        f'{searcher.num_candidates} candidates, seed {searcher.seed}'
        + (' (resumed)' if args.resume else ''))
    result = searcher.run(resume=args.resume)
    summary = write_results(result, work_dir, config=config_path,
                            train_base=train_base)
    searcher.logger.info(
        f"best STEntr-Score {summary['best_score']:.6f} "
        f"({summary['best_flops'] / 1e9:.3f} GFLOPs, "
        f"{summary['best_params'] / 1e6:.3f} M params, "
        f"{summary['best_layers']} layers"
        + (f", {summary['best_latency']:.2f} ms predicted"
           if 'best_latency' in summary else '') + ') after '
        f"{summary['num_evaluated']} candidates in "
        f"{summary['elapsed_s']:.1f} s; results in {work_dir}")
    return summary


def main(argv=None):
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, TypeError) as e:
        # SearchError, StructureError, LatencyError and the constructors'
        # ValueError / TypeError about a config value
        lines = [line for line in str(e).splitlines() if line.strip()]
        print(f'error: {lines[-1] if lines else type(e).__name__}',
              file=sys.stderr)
        return 2
    except OSError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
