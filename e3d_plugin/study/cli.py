"""What the study tools (``tools/rank_study.py``, ``tools/search_trials.py``)
share: the default work dir, the ``--gpus`` check, the order of the steps,
one line per bad input and the exit codes."""
import os.path as osp
import sys

from .sampler import StudyError


def default_work_dir(args, prefix):
    """``args.work_dir``, or ``./work_dirs/<prefix><config name>`` when it
    is not given (an empty one is refused later, not replaced)."""
    if args.work_dir is not None:
        return args.work_dir
    return osp.join('./work_dirs',
                    prefix + osp.splitext(osp.basename(args.config))[0])


def check_gpus(gpus):
    """Refuse ``--gpus`` beyond the CUDA devices of this machine."""
    import torch
    available = torch.cuda.device_count()
    if available < gpus:
        raise StudyError(
            f'--gpus {gpus}: this machine has {available} CUDA devices; '
            'lower --gpus (0 trains on the CPU)')


def run_study(args, work_dir, build, steps, format_table):
    """Build the study (``build()``), check ``--gpus``, prepare it, run
    ``steps`` (names of its methods, unless ``--report-only``), report.

    Prints the table and where the results are; returns the exit code: 2
    with one line ``error: ...`` for a bad input, 1 when runs failed (each
    named), 0 otherwise.
    """
    try:
        study = build()
        if args.gpus and not args.report_only:
            check_gpus(args.gpus)
        study.prepare(report_only=args.report_only)
        if not args.report_only:
            for step in steps:
                getattr(study, step)()
        report = study.report()
    except StudyError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(format_table(report))
    print(f'results in {work_dir}')
    failed = study.failed()
    if failed and not args.report_only:
        for name, seed, reason in failed:
            print(f'error: run {name} seed {seed} failed: {reason}',
                  file=sys.stderr)
        print(f'error: {len(failed)} runs have no result; rerun with '
              '--resume to retry them', file=sys.stderr)
        return 1
    return 0
