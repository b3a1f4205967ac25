"""Search a 3D CNN that maximises a training-free score (STEntr-Score, or
any score of the proxy zoo: ``score.type``) under budgets.

    python tools/search.py CONFIG [--work-dir DIR] [--cfg-options k=v ...]
        [--resume] [--seed N] [--no-progress]

CONFIG (e.g. ``configs/search_e3d_m.py``) sets ``init_structure``,
``score``, ``space``, ``search`` (``EntropyEvolution`` arguments with the
``budgets``) and ``train_base`` (the mmaction2 recipe of the generated
training config). The work dir receives ``best_structure.json``,
``top_k.json``, ``search_summary.json``, ``search_curve.png``,
``e3d_searched.py`` (a ready-to-train mmaction2 config), ``search.log`` and
the checkpoint ``--resume`` continues from.

The work is the library's (:func:`~e3d_plugin.nas.job.run_search`, which
builds the searcher with :func:`~e3d_plugin.nas.build_search` and writes
the results with :func:`~e3d_plugin.nas.write_results`, and
:func:`~e3d_plugin.nas.family.run_family`); this tool parses the
arguments, prints and exits. A bad input ends in one line ``error: ...``
and exit code 2, before the work dir is touched where it can be checked
first; the log is appended to, and a work dir holding an unfinished
search is refused unless ``--resume`` continues it (resume refuses any
changed setting that defines the search, ``num_candidates`` included).

A *family* config (``configs/search_e3d_family.py``) sets only ``family``
(name -> search config, relative to it) and ``work_dir``: each member is
searched in turn, in one process, into ``WORK_DIR/<name>``, with the same
``--cfg-options`` / ``--seed`` / ``--resume``, and ``family_summary.json``
collects their summaries.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

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


def _announce(index, total, name, path):
    print(f'[{index}/{total}] {name}: {path}', file=sys.stderr, flush=True)


def run(args):
    """Search (one config, or each member of a family) and write the
    results; return the summary dict (name -> summary for a family)."""
    from e3d_plugin.nas.family import format_family_table, run_family
    from e3d_plugin.nas.job import is_family, load_search_job, run_search
    cfg, work_dir = load_search_job(args.config, args.cfg_options,
                                    args.work_dir)
    options = dict(seed=args.seed, resume=args.resume,
                   progress=not args.no_progress)
    if not is_family(cfg):
        return run_search(cfg, args.config, work_dir, **options)
    summaries = run_family(cfg, args.config, work_dir,
                           cfg_options=args.cfg_options, announce=_announce,
                           **options)
    print(format_family_table(summaries) + f'\nresults in {work_dir}',
          flush=True)
    return summaries


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
