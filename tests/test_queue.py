"""The run queue of the studies (e3d_plugin/study/queue.py): parallel runs,
threads, failure reasons, the slurm path, kills and resume, the settings it
adds to a run's config, and a study from a non-editable install."""
import json
import os
import os.path as osp
import signal
import stat
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT

from e3d_plugin.study import Run, RunQueue, StudyError, failure_reason
from e3d_plugin.study.queue import check_queue_options

TRAIN_XS = osp.join(ROOT, 'configs', 'e3d',
                    'e3d_xs_8x4x1_synthetic-motion.py')

#: A stand-in trainer: records its call, environment and time span, then
#: writes mmengine scalars whose accuracy is the run's seed / 10.
FAKE_TRAINER = '''
import json, os, signal, sys, time
config, run_dir = sys.argv[1], sys.argv[3]
options = sys.argv[sys.argv.index('--cfg-options') + 1:] \\
    if '--cfg-options' in sys.argv else []
seed = int(next(o for o in options if o.startswith('randomness.seed='))
           .split('=')[1])
name = os.path.basename(run_dir)
begin = time.time()
if name == os.environ.get('KILL_QUEUE_AT'):
    os.kill(os.getppid(), signal.SIGKILL)  # the queue dies mid-run
    sys.exit(0)
if name == os.environ.get('FAIL_RUN'):
    print('Traceback (most recent call last):')
    print('RuntimeError: out of memory at step 3')
    sys.exit(1)
time.sleep(float(os.environ.get('SLEEP', '0')))
if name == os.environ.get('SLOW_RUN'):
    time.sleep(2.0)
out = os.path.join(run_dir, '20990101_000000', 'vis_data')
os.makedirs(out)
with open(os.path.join(out, 'scalars.json'), 'w') as f:
    f.write(json.dumps(dict(lr=0.1, time=0.5, step=10)) + '\\n')
    f.write(json.dumps({'acc/top1': seed / 10, 'step': 1}) + '\\n')
with open(os.environ['CALLS'], 'a') as f:
    f.write(json.dumps(dict(
        name=name, options=options, begin=begin, end=time.time(),
        omp=os.environ.get('OMP_NUM_THREADS'),
        gpu=os.environ.get('CUDA_VISIBLE_DEVICES'),
        cwd=os.getcwd())) + '\\n')
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    trainer = tmp_path / 'fake_train.py'
    trainer.write_text(FAKE_TRAINER)
    config = tmp_path / 'config.py'
    config.write_text('x = 1\n')
    calls = tmp_path / 'calls.jsonl'
    monkeypatch.setenv('CALLS', str(calls))

    def make(work='q', **kwargs):
        kwargs.setdefault('frame_cache', False)
        return RunQueue(str(tmp_path / work), key_fields=('name', 'seed'),
                        train_command=[sys.executable, str(trainer)],
                        stream=open(os.devnull, 'w'), **kwargs)

    def runs(work='q', seeds=(0, 1, 2, 3)):
        return [Run(dict(name='m', seed=s),
                    str(tmp_path / work / 'runs' / f'm_seed{s}'),
                    lambda run_dir: str(config),
                    cfg_options={'randomness.seed': s}, batch_size=8)
                for s in seeds]

    def read_calls():
        if not calls.exists():
            return []
        return [json.loads(line) for line in calls.read_text().splitlines()]

    return dict(tmp=tmp_path, make=make, runs=runs, calls=read_calls,
                trainer=str(trainer), config=str(config))


def test_runs_at_once_single_threaded_and_recorded(fake, monkeypatch):
    monkeypatch.setenv('SLEEP', '1.0')
    queue = fake['make'](jobs=2)
    assert queue.threads == 1 and len(queue.slots) == 2
    records = queue.run(fake['runs']())
    assert sorted(r['seed'] for r in records) == [0, 1, 2, 3]
    assert all(r['status'] == 'done' for r in records)
    assert {r['seed']: r['final'] for r in records} == {
        0: 0.0, 1: 0.1, 2: 0.2, 3: 0.3}
    assert all(r['clips_per_s'] == 16.0 and r['iter_time_s'] == 0.5
               for r in records)
    calls = fake['calls']()
    assert {c['omp'] for c in calls} == {'1'}
    assert {c['gpu'] for c in calls} == {''}  # CPU runs see no GPU
    spans = sorted((c['begin'], c['end']) for c in calls)
    # two at a time: every run overlaps another, never three at once
    assert any(a[0] < b[1] and b[0] < a[1]
               for a in spans for b in spans if a != b)
    for t in [s[0] + 0.01 for s in spans]:
        assert sum(a <= t < b for a, b in spans) <= 2
    # nothing left to train on a rerun
    assert fake['make'](jobs=2).run(fake['runs']()) == []
    assert len(fake['calls']()) == 4


def test_records_come_in_the_order_of_the_runs(fake, monkeypatch):
    # the first run ends last; the records still follow the runs given
    monkeypatch.setenv('SLOW_RUN', 'm_seed0')
    records = fake['make'](jobs=2).run(fake['runs'](seeds=(0, 1, 2)))
    assert [r['seed'] for r in records] == [0, 1, 2]
    ends = {c['name']: c['end'] for c in fake['calls']()}
    assert ends['m_seed1'] < ends['m_seed0']


def test_threads_and_gpus_slots(fake):
    queue = fake['make'](jobs=1, threads=3)
    assert (len(queue.slots), queue.threads) == (1, 3)
    queue = fake['make'](gpus=2, runs_per_gpu=3)
    assert queue.slots == [0, 0, 0, 1, 1, 1]
    assert queue.describe().startswith('6 at once on 2 GPU(s) (3 a GPU')


def test_failure_reason_names_signal_and_last_log_line(tmp_path):
    log = tmp_path / 'train.log'
    log.write_text('step 1\n\nRuntimeError: boom\n\n')
    assert failure_reason(-9, str(log)) == (
        'killed by signal 9 (SIGKILL); last log line: RuntimeError: boom')
    assert failure_reason(137, str(log)).startswith(
        'exit code 137 (signal SIGKILL); last log line: RuntimeError')
    assert failure_reason(1, str(tmp_path / 'none.log')) == 'exit code 1'
    assert failure_reason(0, str(log), 'acc/top1').startswith(
        'no acc/top1 was logged (is validation on?)')


def test_failed_run_recorded_with_reason_others_go_on(fake, monkeypatch):
    monkeypatch.setenv('FAIL_RUN', 'm_seed2')
    queue = fake['make'](jobs=1)
    records = queue.run(fake['runs']())
    failed = [r for r in records if r['status'] == 'failed']
    assert [(r['seed'], r['reason']) for r in failed] == [
        (2, 'exit code 1; last log line: RuntimeError: out of memory at '
         'step 3')]
    assert [(run.key['seed'], reason) for run, reason in
            queue.failed(fake['runs']())] == [(2, failed[0]['reason'])]
    monkeypatch.delenv('FAIL_RUN')
    again = fake['make'](jobs=1).run(fake['runs']())
    assert [(r['seed'], r['status']) for r in again] == [(2, 'done')]


def test_killed_queue_resumes_only_the_unfinished_runs(fake):
    script = textwrap.dedent(f'''
        import os, sys
        sys.path.insert(0, {ROOT!r})
        from e3d_plugin.study import Run, RunQueue
        queue = RunQueue({str(fake['tmp'] / 'q')!r},
                         key_fields=('name', 'seed'), jobs=1,
                         frame_cache=False,
                         train_command=[sys.executable, {fake['trainer']!r}])
        runs = [Run(dict(name='m', seed=s),
                    os.path.join({str(fake['tmp'] / 'q')!r}, 'runs',
                                 f'm_seed{{s}}'),
                    lambda run_dir: {fake['config']!r},
                    cfg_options={{'randomness.seed': s}}) for s in range(4)]
        queue.run(runs)
        ''')
    proc = subprocess.run([sys.executable, '-c', script], timeout=300,
                          env=dict(os.environ, KILL_QUEUE_AT='m_seed2'))
    assert proc.returncode == -signal.SIGKILL
    assert [c['name'] for c in fake['calls']()] == ['m_seed0', 'm_seed1']
    queue = fake['make'](jobs=1)
    records = queue.run(fake['runs']())
    assert [(r['seed'], r['status']) for r in records] == [
        (2, 'done'), (3, 'done')]
    assert [c['name'] for c in fake['calls']()] == [
        'm_seed0', 'm_seed1', 'm_seed2', 'm_seed3']
    lines = (fake['tmp'] / 'q' / 'results.jsonl').read_text().splitlines()
    assert [json.loads(line)['seed'] for line in lines] == [0, 1, 2, 3]


def test_slurm_runs_go_through_srun(fake, monkeypatch):
    bin_dir = fake['tmp'] / 'bin'
    bin_dir.mkdir()
    record = fake['tmp'] / 'srun_calls.jsonl'
    srun = bin_dir / 'srun'
    # a stand-in srun: records its arguments and runs the command after
    # its own options
    srun.write_text(textwrap.dedent(f'''\
        #!{sys.executable}
        import json, os, sys
        args = sys.argv[1:]
        with open({str(record)!r}, 'a') as f:
            f.write(json.dumps(args) + '\\n')
        start = args.index({sys.executable!r})
        os.execv(args[start], args[start:])
        '''))
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv('PATH', f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    queue = fake['make'](launcher='slurm', partition='video', jobs=2,
                         gpus_per_task=2, cpus_per_task=4,
                         srun_args='--time=10 --qos=low', job_name='study')
    records = queue.run(fake['runs'](seeds=(0, 1)))
    assert sorted((r['seed'], r['status']) for r in records) == [
        (0, 'done'), (1, 'done')]
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert sorted(calls) == sorted(
        ['-p', 'video', f'--job-name=study-m-{s}', '--gres=gpu:2',
         '--ntasks=1', '--ntasks-per-node=1', '--cpus-per-task=4',
         '--kill-on-bad-exit=1', '--time=10', '--qos=low', sys.executable,
         fake['trainer'], fake['config'], '--work-dir',
         str(fake['tmp'] / 'q' / 'runs' / f'm_seed{s}'), '--cfg-options',
         f'randomness.seed={s}'] for s in (0, 1))
    assert {c['omp'] for c in fake['calls']()} == {'4'}


@pytest.mark.parametrize('options,message', [
    (dict(jobs=0), '--jobs must be an integer >= 1, got 0'),
    (dict(jobs=True), '--jobs must be an integer >= 1, got True'),
    (dict(threads=0), '--threads must be an integer >= 1, got 0'),
    (dict(gpus=1, runs_per_gpu=0),
     '--runs-per-gpu must be an integer >= 1, got 0'),
    (dict(launcher='foo'), "--launcher must be one of local, slurm, got "
     "'foo'"),
    (dict(launcher='slurm'), '--launcher slurm needs --partition NAME'),
    (dict(launcher='slurm', partition=' '),
     '--launcher slurm needs --partition NAME'),
    (dict(launcher='slurm', partition='p', gpus_per_task=-1),
     '--gpus-per-task must be an integer >= 0, got -1'),
    (dict(cpus_per_task=4), '--cpus-per-task goes with --launcher slurm'),
    (dict(srun_args='-x'), '--srun-args goes with --launcher slurm'),
])
def test_bad_queue_options_one_line(options, message):
    with pytest.raises(StudyError) as e:
        check_queue_options(**options)
    assert str(e.value) == message
    with pytest.raises(StudyError, match='^' + message.replace(
            '(', r'\(').replace(')', r'\)').replace('?', r'\?')):
        RunQueue('unused', **options)


def test_frame_cache_options_of_a_run(fake, tmp_path):
    wrapped = tmp_path / 'wrapped.py'
    wrapped.write_text(textwrap.dedent(f'''
        _base_ = [{TRAIN_XS!r}]
        train_dataloader = dict(
            _delete_=True, batch_size=4, num_workers=2,
            dataset=dict(type='RepeatDataset', times=2, dataset=dict(
                type='VideoDataset', ann_file='a.txt',
                pipeline=[dict(type='mmaction.DecordInit'),
                          dict(type='DecordDecode')])))
        '''))
    queue = fake['make'](frame_cache=True)
    run = fake['runs']()[0]
    options = queue.queue_options(run, str(wrapped))
    cache = osp.abspath(queue.cache_dir)
    assert options['custom_imports.imports'] == [
        'e3d_plugin', 'e3d_plugin.datasets.frame_cache']
    assert options['train_dataloader.dataset.dataset.pipeline.0.type'] == \
        'CachedDecordInit'
    assert options['train_dataloader.dataset.dataset.pipeline.0.cache_dir'] \
        == cache
    assert options['val_dataloader.dataset.pipeline.0.type'] == \
        'CachedDecordInit'
    assert options['train_dataloader.num_workers'] == 0
    assert options['val_dataloader.persistent_workers'] is False
    assert not any('pipeline.1' in key for key in options)
    # the options land: the merged config has the cached init everywhere
    from e3d_plugin.launch import load_config
    cfg = load_config(str(wrapped), options)
    assert cfg.train_dataloader.dataset.dataset.pipeline[0]['type'] == \
        'CachedDecordInit'
    assert cfg.val_dataloader.dataset.pipeline[0]['cache_dir'] == cache
    assert fake['make'](frame_cache=False).queue_options(
        run, str(wrapped)) == {}


@pytest.mark.slow
def test_a_study_runs_from_a_non_editable_install(tmp_path):
    """Build a wheel, install it (without dependencies) into a fresh venv
    that sees this environment's packages but not the checkout, and run a
    3 x 1 rank study from a folder outside the checkout."""
    import site
    import sysconfig
    wheels = tmp_path / 'wheels'
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '-w', str(wheels), ROOT],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(wheels.glob('e3d_plugin-*.whl'))
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True,
                   timeout=300)
    python = str(venv / 'bin' / 'python')
    proc = subprocess.run([python, '-m', 'pip', 'install', '--no-deps',
                           '--no-index', str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the dependencies of this environment, without its .pth files (the
    # editable install of the checkout is one)
    purelib = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_paths()'
         '["purelib"])'], capture_output=True, text=True,
        check=True).stdout.strip()
    ours = [p for p in site.getsitepackages() + [sysconfig.get_paths()[
        'purelib']] if osp.isdir(p)]
    with open(osp.join(purelib, 'deps_of_the_test.pth'), 'w') as f:
        f.write('\n'.join(dict.fromkeys(ours)) + '\n')
    data = tmp_path / 'data'
    proc = subprocess.run(
        [python, '-c', 'from e3d_plugin.datasets.synthetic_motion import '
         f'generate; generate({str(data)!r}, num_videos=30, size=32, '
         'frames=16)'], capture_output=True, text=True, timeout=300,
        cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    train = tmp_path / 'train.py'
    train.write_text(textwrap.dedent(f'''
        _base_ = [{TRAIN_XS!r}]
        data_root = {str(data)!r}
        _loader = dict(batch_size=8)
        train_dataloader = dict(**_loader, dataset=dict(
            ann_file=data_root + '/train_list.txt',
            data_prefix=dict(video=data_root + '/videos')))
        val_dataloader = dict(**_loader, dataset=dict(
            ann_file=data_root + '/val_list.txt',
            data_prefix=dict(video=data_root + '/videos')))
        test_dataloader = val_dataloader
        train_cfg = dict(max_epochs=1)
        param_scheduler = [dict(type='ConstantLR', factor=1.0)]
        '''))
    script = textwrap.dedent(f'''
        import e3d_plugin, json
        from e3d_plugin.study import RankStudy
        assert e3d_plugin.__file__.startswith({str(venv)!r}), \\
            e3d_plugin.__file__
        study = RankStudy({osp.join(ROOT, 'configs', 'search_e3d_xs.py')!r},
                          {str(train)!r}, 'study', num_archs=3, seeds=1,
                          num_candidates=500, n_resamples=50)
        study.prepare()
        records = study.train()
        print(json.dumps([(r['arch'], r['status']) for r in records]))
        ''')
    proc = subprocess.run([python, '-c', script], capture_output=True,
                          text=True, timeout=1200, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [
        ['a00', 'done'], ['a01', 'done'], ['a02', 'done']]
    # every run trained with the installed package, not the checkout
    for run in ('a00', 'a01', 'a02'):
        log = (tmp_path / 'study' / 'runs' / f'{run}_seed0' /
               'train.log').read_text()
        assert 'Epoch(val) [1]' in log
    results = (tmp_path / 'study' / 'results.jsonl').read_text()
    assert len(results.splitlines()) == 3
