"""One run queue for every study: train many (config, seed) runs, each in
its own process, record each in ``results.jsonl``, resume after a kill.

    queue = RunQueue('work_dirs/study', jobs=2)
    runs = [Run(dict(arch='a00', seed=0), 'work_dirs/study/runs/a00_seed0',
                write_config=lambda run_dir: 'path/of/its/config.py')]
    queue.run(runs)            # the runs not finished yet; returns records

Both studies use it: the rank study (:mod:`e3d_plugin.study.runner`) and the
E3D vs X3D comparison (``bench/e3d_vs_x3d.py``).

Every run is ``python -m e3d_plugin.launch.train CONFIG --work-dir RUN_DIR``
(the training entry point of the installed package, so a study runs from a
non-editable install too), its output in ``RUN_DIR/train.log``. A finished
run appends one line to ``results.jsonl`` (see
:mod:`e3d_plugin.study.results`): its key fields, ``status`` (``done`` or
``failed``), the validation curve with ``final`` and ``best``, the median
training iteration time and, with a batch size, the clips/s. A failed run's
``reason`` names the exit code or the signal that ended it and the last line
of its log. A rerun skips the runs whose latest record is ``done``; a run a
kill interrupted starts over in a fresh run dir.

Where runs go (``launcher``):

* ``local`` on CPU (``gpus=0``, ``CUDA_VISIBLE_DEVICES`` emptied for the
  runs): ``jobs`` runs at once, each with
  ``threads`` intra-op threads (``OMP_NUM_THREADS``). A study is many small
  trainings, and small 3D convs scale poorly over threads: on 2 cores two
  one-thread runs side by side finish more runs per hour than one
  two-thread run (``bench/study_speed.py``). Defaults: one thread a run, as
  many runs as cores.
* ``local`` with ``gpus=G``: ``runs_per_gpu`` runs on each of GPUs 0..G-1
  (``CUDA_VISIBLE_DEVICES``), for networks too small to fill a GPU.
* ``slurm``: each run is submitted through ``srun`` (partition, GPUs and
  CPUs per task as in ``tools/slurm_train.sh``), ``jobs`` at once.

The queue also makes each run cheap to feed (``frame_cache``): every
``DecordInit`` of the run's pipelines becomes ``CachedDecordInit`` into
``WORK_DIR/frame_cache`` (each video decoded once for the whole study, the
same pixels), and data loads in the training process (``num_workers=0``):
with decoding gone, worker processes only take cores from the runs.
"""
import os
import os.path as osp
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time

from .results import (append_result, finished_runs, read_results,
                      record_problem)
from .sampler import StudyError

LAUNCHERS = ('local', 'slurm')
RESULTS_NAME = 'results.jsonl'
CACHE_NAME = 'frame_cache'
CACHE_MODULE = 'e3d_plugin.datasets.frame_cache'
#: The training entry point every run starts, as a module.
TRAIN_MODULE = 'e3d_plugin.launch.train'


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def duration(seconds):
    """``seconds`` as ``42s``, ``3m05s`` or ``2h07m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f'{seconds}s'
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f'{minutes}m{seconds:02d}s'
    hours, minutes = divmod(minutes, 60)
    return f'{hours}h{minutes:02d}m'


def usable_cores():
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cli_value(value):
    """``value`` written back as mmengine's ``DictAction`` reads it."""
    if isinstance(value, (list, tuple)):
        inner = ','.join(cli_value(v) for v in value)
        return f'[{inner}]' if isinstance(value, list) else f'({inner})'
    return str(value)


def read_scalars(run_dir):
    """The records of mmengine's ``vis_data/scalars.json`` of the newest
    run in ``run_dir`` (one dict per logged line; an empty list when none
    was written; unreadable lines, e.g. a half-written last one, are
    skipped)."""
    import json
    found = []
    if osp.isdir(run_dir):
        for name in sorted(os.listdir(run_dir)):
            path = osp.join(run_dir, name, 'vis_data', 'scalars.json')
            if osp.isfile(path):
                found.append(path)
    if not found:
        return []
    records = []
    with open(found[-1]) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def read_accuracy(run_dir, metric='acc/top1'):
    """Validation ``metric`` of an mmengine run: ``(values, epochs)`` read
    from ``<run_dir>/<timestamp>/vis_data/scalars.json`` (the newest run),
    empty lists when none was logged."""
    values, steps = [], []
    for record in read_scalars(run_dir):
        if metric in record:
            values.append(float(record[metric]))
            steps.append(record.get('step'))
    return values, steps


def read_iteration_times(run_dir):
    """The training iteration times (seconds, one per logged window) of an
    mmengine run in ``run_dir`` (its newest ``vis_data/scalars.json``)."""
    # training records carry the learning rate, validation ones not
    return [float(record['time']) for record in read_scalars(run_dir)
            if 'lr' in record and 'time' in record]


def last_log_line(path):
    """The last non-empty line of a log file ('' when there is none)."""
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            lines = [line.strip() for line in
                     f.read().decode(errors='replace').splitlines()
                     if line.strip()]
    except OSError:
        return ''
    return lines[-1] if lines else ''


def failure_reason(returncode, log_path, metric='acc/top1'):
    """Why a run has no result: the exit code or the signal that ended it,
    and the last line of its log."""
    if returncode == 0:
        reason = f'no {metric} was logged (is validation on?)'
    elif returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = 'an unknown signal'
        reason = f'killed by signal {-returncode} ({name})'
    elif returncode > 128 and returncode - 128 in set(signal.Signals):
        # a shell or srun reports a signal as 128 + its number
        reason = (f'exit code {returncode} (signal '
                  f'{signal.Signals(returncode - 128).name})')
    else:
        reason = f'exit code {returncode}'
    last = last_log_line(log_path)
    return reason + (f'; last log line: {last}' if last else '')


class Run:
    """One training run of a study.

    Args:
        key (dict): What identifies the run in ``results.jsonl`` (e.g.
            ``dict(arch='a00', seed=0)``); copied into its record.
        run_dir (str): The run's work dir (emptied when the run starts).
        write_config (callable): ``write_config(run_dir) -> path`` writes
            the config the run trains (called when it starts, in the fresh
            run dir).
        cfg_options (dict, optional): Overrides of that config.
        label (str, optional): Shown in progress lines (default: the key).
        batch_size (int, optional): Training batch size, for clips/s.
    """

    def __init__(self, key, run_dir, write_config, cfg_options=None,
                 label=None, batch_size=None):
        self.key = dict(key)
        self.run_dir = run_dir
        self.write_config = write_config
        self.cfg_options = dict(cfg_options or {})
        self.label = label or ' '.join(f'{k} {v}' for k, v in
                                       self.key.items())
        self.batch_size = batch_size

    def key_tuple(self, fields):
        """The key as a tuple of ``fields``."""
        return tuple(self.key.get(field) for field in fields)


def check_queue_options(jobs=None, threads=None, gpus=0, runs_per_gpu=None,
                        launcher='local', partition=None,
                        gpus_per_task=None, cpus_per_task=None,
                        srun_args=None):
    """Raise :class:`StudyError` with one line naming the first bad
    queue option (the command-line flag)."""
    for flag, value, low in (('--jobs', jobs, 1), ('--threads', threads, 1),
                             ('--runs-per-gpu', runs_per_gpu, 1),
                             ('--gpus-per-task', gpus_per_task, 0),
                             ('--cpus-per-task', cpus_per_task, 1)):
        if value is not None and (not _is_int(value) or value < low):
            raise StudyError(f'{flag} must be an integer >= {low}, got '
                             f'{value!r}')
    if not _is_int(gpus) or gpus < 0:
        raise StudyError(f'--gpus must be an integer >= 0, got {gpus!r}')
    for flag, value in (('--jobs', jobs), ('--threads', threads)):
        if value is not None and value > 1024:
            raise StudyError(f'{flag} {value} is more than this queue '
                             'starts (at most 1024)')
    if runs_per_gpu is not None and runs_per_gpu > 64:
        raise StudyError(f'--runs-per-gpu {runs_per_gpu} is more than '
                         'a GPU holds usefully (at most 64)')
    if launcher not in LAUNCHERS:
        raise StudyError(f'--launcher must be one of {", ".join(LAUNCHERS)}'
                         f', got {launcher!r}')
    if launcher == 'local':
        for flag, value in (('--partition', partition),
                            ('--gpus-per-task', gpus_per_task),
                            ('--cpus-per-task', cpus_per_task),
                            ('--srun-args', srun_args)):
            if value is not None:
                raise StudyError(f'{flag} goes with --launcher slurm')
        if gpus and jobs is not None:
            raise StudyError(
                '--jobs and --gpus: give one; with --gpus G the queue runs '
                '--runs-per-gpu runs on each GPU')
        if runs_per_gpu is not None and not gpus:
            raise StudyError('--runs-per-gpu goes with --gpus G (the runs '
                             'on each of G GPUs)')
    else:
        if not isinstance(partition, str) or not partition.strip():
            raise StudyError('--launcher slurm needs --partition NAME')
        if gpus or runs_per_gpu is not None:
            raise StudyError(
                '--gpus / --runs-per-gpu are for local GPUs; with '
                '--launcher slurm give --gpus-per-task and --jobs')
        if srun_args is not None and not isinstance(srun_args, str):
            raise StudyError('--srun-args must be a string of srun options')
        try:
            shlex.split(srun_args or '')
        except ValueError as e:
            raise StudyError(f'--srun-args {srun_args!r}: {e} (write the '
                             'options as on a shell command line)') from None
        if shutil.which('srun') is None:
            raise StudyError('--launcher slurm: no srun command on PATH; run '
                             'the study on a slurm login node (or use '
                             '--launcher local)')


def add_queue_arguments(parser):
    """Add the run queue's options to an ``argparse`` parser (the rank
    study and the E3D vs X3D bench share them)."""
    group = parser.add_argument_group('where runs go')
    group.add_argument('--jobs', type=int,
                       help='runs at once on CPU or through slurm (default: '
                       'one per CPU core; 1 through slurm)')
    group.add_argument('--threads', type=int,
                       help='intra-op threads of each run (default 1 on CPU)')
    group.add_argument('--gpus', type=int, default=0,
                       help='spread runs over GPUs 0..G-1 (default 0: CPU)')
    group.add_argument('--runs-per-gpu', type=int,
                       help='runs at once on each GPU (default 1)')
    group.add_argument('--launcher', default='local',
                       help='local (default) or slurm (each run through '
                       'srun)')
    group.add_argument('--partition', help='slurm partition (srun -p)')
    group.add_argument('--gpus-per-task', type=int,
                       help='GPUs of each slurm run (default 1)')
    group.add_argument('--cpus-per-task', type=int,
                       help='CPUs of each slurm run (default 5)')
    group.add_argument('--srun-args',
                       help='more srun options, one string')
    group.add_argument('--no-frame-cache', action='store_true',
                       help='decode the videos in every run (default: each '
                       'video once, into WORK_DIR/frame_cache)')


def queue_options(args):
    """The :class:`RunQueue` arguments of a command line parsed with
    :func:`add_queue_arguments`."""
    return dict(jobs=args.jobs, threads=args.threads, gpus=args.gpus,
                runs_per_gpu=args.runs_per_gpu, launcher=args.launcher,
                partition=args.partition, gpus_per_task=args.gpus_per_task,
                cpus_per_task=args.cpus_per_task, srun_args=args.srun_args,
                frame_cache=not args.no_frame_cache)


class RunQueue:
    """Train runs, each in its own process, several at once (see the module
    docstring).

    Args:
        work_dir (str): Holds ``results.jsonl`` and the frame cache.
        key_fields (tuple[str]): The key fields of a run's record.
        jobs (int, optional): Runs at once on CPU or through slurm
            (default: one per usable core on CPU, 1 through slurm).
        threads (int, optional): Intra-op threads of each run (default 1
            on CPU; usable cores over the runs at once with GPUs).
        gpus (int): Local GPUs to spread runs over (0: the runs train on
            the CPU).
        runs_per_gpu (int, optional): Runs at once on each GPU (default 1).
        launcher (str): ``'local'`` or ``'slurm'``.
        partition, gpus_per_task, cpus_per_task, srun_args: ``srun``'s
            ``-p``, ``--gres=gpu:N`` (default 1), ``--cpus-per-task``
            (default 5) and extra arguments, with ``launcher='slurm'``.
        job_name (str): ``srun --job-name`` prefix.
        frame_cache (bool): Decode each video once (see the module doc).
        metric (str): The validation metric of a run's result.
        keep_checkpoints (bool): Keep each finished run's ``*.pth`` files.
        train_command (list[str], optional): The command that trains one
            config (``CONFIG --work-dir DIR [--cfg-options ...]`` are
            appended); defaults to ``python -m e3d_plugin.launch.train``.
        stop_on_first_failure (bool): When the first run to end fails and
            none has finished before, stop (most likely the config).
        error (type): The exception class raised for the user.
        stream: Where progress lines go (stderr).
    """

    def __init__(self, work_dir, key_fields=('arch', 'seed'), jobs=None,
                 threads=None, gpus=0, runs_per_gpu=None, launcher='local',
                 partition=None, gpus_per_task=None, cpus_per_task=None,
                 srun_args=None, job_name='e3d', frame_cache=True,
                 metric='acc/top1', keep_checkpoints=False,
                 train_command=None, stop_on_first_failure=True,
                 error=StudyError, stream=None):
        try:
            check_queue_options(jobs, threads, gpus, runs_per_gpu, launcher,
                                partition, gpus_per_task, cpus_per_task,
                                srun_args)
        except StudyError as e:
            raise error(str(e)) from None
        self.work_dir = work_dir
        self.key_fields = tuple(key_fields)
        self.launcher = launcher
        self.gpus = gpus
        cores = usable_cores()
        if launcher == 'slurm':
            self.slots = [None] * (jobs or 1)
        elif gpus:
            self.slots = [gpu for gpu in range(gpus)
                          for _ in range(runs_per_gpu or 1)]
        else:
            self.slots = [None] * (jobs or max(1, cores // (threads or 1)))
        self.threads = threads or (
            1 if not gpus else max(1, cores // len(self.slots)))
        self.partition = partition
        self.gpus_per_task = 1 if gpus_per_task is None else gpus_per_task
        self.cpus_per_task = cpus_per_task or 5
        self.srun_args = srun_args or ''
        self.job_name = job_name
        self.frame_cache = frame_cache
        self.metric = metric
        self.keep_checkpoints = keep_checkpoints
        self.train_command = list(train_command or [
            sys.executable, '-u', '-m', TRAIN_MODULE])
        self.stop_on_first_failure = stop_on_first_failure
        self.error = error
        self.stream = stream or sys.stderr
        self.notes = []

    # ------------------------------------------------------------------
    @property
    def results_path(self):
        """The queue's JSON-lines results file."""
        return osp.join(self.work_dir, RESULTS_NAME)

    @property
    def cache_dir(self):
        """Where the decoded frames of the runs' videos go."""
        return osp.join(self.work_dir, CACHE_NAME)

    def describe(self):
        """One line: where and how many runs go at once."""
        if self.launcher == 'slurm':
            return (f'{len(self.slots)} at once through srun -p '
                    f'{self.partition} ({self.gpus_per_task} GPU, '
                    f'{self.cpus_per_task} CPUs a run)')
        if self.gpus:
            per = len(self.slots) // self.gpus
            return (f'{len(self.slots)} at once on {self.gpus} GPU(s) ({per} '
                    f'a GPU, {self.threads} thread(s) each)')
        return (f'{len(self.slots)} at once, {self.threads} thread(s) each')

    def log(self, text):
        """One progress line on the stream."""
        self.stream.write(text + '\n')
        self.stream.flush()

    def load_results(self, repair=True):
        """Records of the results file: a half-written line is dropped, a
        record that cannot be used (see
        :func:`~e3d_plugin.study.results.record_problem`) is skipped with a
        note, so its run counts as not finished. A results file that
        cannot be read is refused (``self.error``)."""
        path = self.results_path
        if osp.lexists(path) and not osp.isfile(path):
            raise self.error(f'{path} is not a regular file; the results '
                             'of a study are a file: choose another '
                             '--work-dir')
        try:
            records, notes = read_results(path, repair=repair)
        except OSError as e:
            raise self.error(f'{path} cannot be read ({e.strerror or e}); '
                             'choose another --work-dir') from None
        usable = []
        for number, record in enumerate(records, 1):
            problem = record_problem(record, self.key_fields)
            if problem is None:
                usable.append(record)
            else:
                notes.append(f'{path}: record {number} skipped: {problem}')
        records = usable
        for note in notes:
            if note not in self.notes:
                self.notes.append(note)
                self.log(f'note: {note}')
        return records

    def finished(self, records=None):
        """``{key tuple: record}`` of the runs whose latest record is done."""
        if records is None:
            records = self.load_results()
        return finished_runs(records, self.key_fields)

    # ------------------------------------------------------------------
    def queue_options(self, run, config):
        """The settings the queue adds to a run's config: the frame cache
        in every pipeline, data loaded in the training process."""
        if not self.frame_cache:
            return {}
        from e3d_plugin.launch import LaunchError, dataset_configs, load_config
        try:
            cfg = load_config(config, run.cfg_options or None)
        except LaunchError as e:
            raise self.error(f'{run.label}: {e}') from None
        imports = list((cfg.get('custom_imports') or {}).get('imports')
                       or [])
        if CACHE_MODULE not in imports:
            # registers CachedDecordInit in the training process
            options = {'custom_imports.imports': imports + [CACHE_MODULE]}
        else:
            options = {}
        for split in ('train', 'val', 'test'):
            loader = cfg.get(f'{split}_dataloader')
            if not isinstance(loader, dict):
                continue
            options[f'{split}_dataloader.num_workers'] = 0
            options[f'{split}_dataloader.persistent_workers'] = False
            path = f'{split}_dataloader.dataset'
            dataset = loader.get('dataset')
            while isinstance(dataset, dict) and isinstance(
                    dataset.get('dataset'), dict):  # RepeatDataset & co.
                dataset, path = dataset['dataset'], path + '.dataset'
            if not dataset_configs(dataset) or dataset_configs(
                    dataset)[0] is not dataset:
                continue  # ConcatDataset: left as it is
            pipeline = dataset.get('pipeline')
            if not isinstance(pipeline, (list, tuple)):
                continue
            for index, step in enumerate(pipeline):
                kind = step.get('type') if isinstance(step, dict) else None
                if isinstance(kind, str) and kind.split('.')[-1] == \
                        'DecordInit':
                    options[f'{path}.pipeline.{index}.type'] = \
                        'CachedDecordInit'
                    options[f'{path}.pipeline.{index}.cache_dir'] = \
                        osp.abspath(self.cache_dir)
        return options

    def command(self, run):
        """``(command, env)`` of a run (its run dir made fresh)."""
        if osp.isdir(run.run_dir):  # a run a kill interrupted: start over
            shutil.rmtree(run.run_dir)
        os.makedirs(run.run_dir)
        config = run.write_config(run.run_dir)
        options = dict(run.cfg_options)
        options.update(self.queue_options(run, config))
        command = list(self.train_command) + [config, '--work-dir',
                                              run.run_dir]
        if options:
            command += ['--cfg-options'] + [
                f'{key}={cli_value(value)}' for key, value in options.items()]
        env = dict(os.environ)
        env['OMP_NUM_THREADS'] = env['MKL_NUM_THREADS'] = str(self.threads)
        if self.launcher == 'slurm':
            name = f"{self.job_name}-{'-'.join(map(str, run.key.values()))}"
            srun = ['srun', '-p', self.partition, f'--job-name={name}',
                    f'--gres=gpu:{self.gpus_per_task}', '--ntasks=1',
                    '--ntasks-per-node=1',
                    f'--cpus-per-task={self.cpus_per_task}',
                    '--kill-on-bad-exit=1']
            srun += shlex.split(self.srun_args)
            env['OMP_NUM_THREADS'] = env['MKL_NUM_THREADS'] = str(
                self.cpus_per_task)
            command = srun + command
        return command, env

    def _record(self, run, returncode, elapsed, started_at):
        values, steps = read_accuracy(run.run_dir, self.metric)
        log_path = osp.join(run.run_dir, 'train.log')
        record = dict(run.key, elapsed_s=round(elapsed, 2),
                      started_at=round(started_at, 3),
                      returncode=returncode,
                      log=osp.relpath(log_path, self.work_dir))
        if returncode == 0 and values:
            times = read_iteration_times(run.run_dir)
            iter_time = statistics.median(times) if times else None
            record.update(status='done', final=values[-1], best=max(values),
                          curve=values, epochs=steps, iter_time_s=iter_time,
                          threads=self.threads)
            if run.batch_size and iter_time:
                record.update(batch_size=run.batch_size,
                              clips_per_s=run.batch_size / iter_time)
        else:
            record.update(status='failed', reason=failure_reason(
                returncode, log_path, self.metric))
        append_result(self.results_path, record)
        if record['status'] == 'done' and not self.keep_checkpoints:
            for name in os.listdir(run.run_dir):
                if name.endswith('.pth'):
                    os.remove(osp.join(run.run_dir, name))
        return record

    def _start(self, run, slot):
        command, env = self.command(run)
        if slot is not None:
            env['CUDA_VISIBLE_DEVICES'] = str(slot)
        elif self.launcher == 'local':
            # gpus=0: the runs train on the CPU, whatever the machine has
            env['CUDA_VISIBLE_DEVICES'] = ''
        log = open(osp.join(run.run_dir, 'train.log'), 'wb')
        try:
            proc = subprocess.Popen(command, stdout=log,
                                    stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        except OSError as e:
            log.close()
            raise self.error(f'cannot start {command[0]}: {e}') from None
        return proc, log

    @staticmethod
    def _stop(proc):
        """End a run and its data-loading workers (its process group)."""
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def run(self, runs, describe=None):
        """Train every run of ``runs`` not finished yet; return the records
        of the runs trained now, in the order of ``runs`` (whichever
        finished first). A run that fails is recorded and the
        others go on, unless no run has finished yet (then it is most
        likely the config, and the queue stops with ``error``).

        ``describe(run)``, when given, adds to the line of a started run.
        """
        keys = [run.key_tuple(self.key_fields) for run in runs]
        if len(set(keys)) != len(keys):
            raise self.error('two runs of the queue have the same key')
        os.makedirs(self.work_dir, exist_ok=True)
        done = self.finished()
        pending = [run for run in runs
                   if run.key_tuple(self.key_fields) not in done]
        total = len(runs)
        finished_before = total - len(pending)
        if finished_before:
            self.log(f'resuming: {finished_before}/{total} runs finished, '
                     f'{len(pending)} to train')
        if pending:
            self.log(f'training {len(pending)} run(s), {self.describe()}')
        # slot index -> (proc, log, run, begun, position, start time)
        active = {}
        trained = []
        numbers = []  # each trained record's position in the queue
        started = time.monotonic()
        position = finished_before
        succeeded = finished_before
        try:
            while pending or active:
                while pending and len(active) < len(self.slots):
                    index = next(i for i in range(len(self.slots))
                                 if i not in active)
                    run = pending.pop(0)
                    position += 1
                    proc, log = self._start(run, self.slots[index])
                    active[index] = (proc, log, run, time.monotonic(),
                                     position, time.time())
                    where = ('' if self.slots[index] is None else
                             f' on GPU {self.slots[index]}')
                    extra = f' ({describe(run)})' if describe else ''
                    self.log(f'[{position}/{total}] {run.label} started'
                             f'{where}{extra}')
                ended = [i for i, job in active.items()
                         if job[0].poll() is not None]
                if not ended:
                    time.sleep(0.2)
                    continue
                for index in ended:
                    proc, log, run, begun, number, at = active.pop(index)
                    log.close()
                    record = self._record(run, proc.returncode,
                                          time.monotonic() - begun, at)
                    trained.append(record)
                    numbers.append(number)
                    elapsed = time.monotonic() - started
                    left = len(pending) + len(active)
                    eta = (statistics.fmean(r['elapsed_s'] for r in trained)
                           * left / len(self.slots))
                    if record['status'] == 'done':
                        succeeded += 1
                        outcome = (f"{self.metric} {record['final']:.4f} "
                                   f"(best {record['best']:.4f})")
                        if record.get('clips_per_s'):
                            outcome += (f", {record['clips_per_s']:.1f} "
                                        'clips/s')
                    else:
                        outcome = (f"FAILED: {record['reason']}; see "
                                   f"{osp.join(run.run_dir, 'train.log')}")
                    self.log(f'[{number}/{total}] {run.label}: {outcome} in '
                             f"{duration(record['elapsed_s'])}; elapsed "
                             f'{duration(elapsed)}, ETA {duration(eta)}')
                    if (record['status'] != 'done' and not succeeded
                            and self.stop_on_first_failure):
                        raise self.error(
                            f'the first run failed ({record["reason"]}); '
                            f'see {osp.join(run.run_dir, "train.log")}')
        finally:
            for proc, log, *_ in active.values():
                self._stop(proc)
                log.close()
        return [record for _, record in sorted(zip(numbers, trained),
                                               key=lambda pair: pair[0])]

    def failed(self, runs):
        """Runs of ``runs`` without a finished result:
        ``[(run, reason)]``."""
        records = self.load_results()
        done = self.finished(records)
        reasons = {tuple(r.get(f) for f in self.key_fields): r.get('reason')
                   for r in records if r.get('status') != 'done'}
        return [(run, reasons.get(run.key_tuple(self.key_fields),
                                  'not trained'))
                for run in runs
                if run.key_tuple(self.key_fields) not in done]


__all__ = ['Run', 'RunQueue', 'LAUNCHERS', 'TRAIN_MODULE',
           'add_queue_arguments', 'queue_options',
           'check_queue_options', 'failure_reason', 'read_accuracy',
           'read_scalars', 'read_iteration_times', 'duration', 'cli_value',
           'usable_cores']
