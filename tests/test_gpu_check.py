"""bench/gpu_check.sh and its table: the table's figures and verdicts from
result files, and the script's CPU smoke mode on some parts."""
import json
import os
import subprocess
import sys
import tarfile

import pytest

from tests.helpers import ROOT


def _speed(first, second, train, infer, ratio=None, fraction=None,
           profile=None):
    """A backbone_speed.py JSON of (first, second) clips/s per mode."""
    modes = {}
    for mode, clips in (('train', train), ('infer', infer)):
        if clips is None:
            continue
        r = ratio or clips[0] / clips[1]
        modes[mode] = dict(
            clips_s={first: dict(median=clips[0]),
                     second: dict(median=clips[1])},
            ratio=dict(median=r, q1=r - 0.05, q3=r + 0.05))
        if fraction is not None:
            modes[mode]['memory'] = {first: dict(fraction=fraction)}
        if profile is not None:
            modes[mode]['profile'] = {first: profile}
    return dict(settings=dict(models=[first, second]), modes=modes)


def _write(folder, name, data):
    with open(os.path.join(folder, name), 'w', encoding='utf-8') as f:
        if isinstance(data, str):
            f.write(data)
        else:
            json.dump(data, f)


def run_table(folder):
    return subprocess.run(
        [sys.executable, 'bench/gpu_check_table.py', str(folder)], cwd=ROOT,
        capture_output=True, text=True, timeout=60)


def run_check(timeout, **env):
    """bench/gpu_check.sh in its CPU smoke mode, this interpreter as
    $PYTHON, with ``env`` on top of this process's environment (without
    its $RESULTS)."""
    full = dict(os.environ, DEVICE='cpu', PYTHON=sys.executable)
    full.pop('RESULTS', None)
    full.update(env)
    return subprocess.run(['bash', 'bench/gpu_check.sh'], cwd=ROOT,
                          env=full, capture_output=True, text=True,
                          timeout=timeout)


def printed_table(result):
    """The table at the end of the script's output."""
    return result.stdout[result.stdout.index('part   '):]


def rows(text):
    """The table's rows as lists of the fields split on 2+ spaces."""
    import re
    return [re.split(r'\s{2,}', line.strip())
            for line in text.splitlines()[1:]]


def test_table_targets_from_result_files(tmp_path):
    models = ('E3D-M', 'X3D-M')
    _write(tmp_path, 'speed_fp32.json', _speed(
        *models, (150.0, 115.0), (900.0, 680.0), fraction=0.15,
        profile=dict(dw_ms=24.0, step_ms=53.0, kernel_ms=48.0)))
    _write(tmp_path, 'speed_amp.json', _speed(
        *models, (140.0, 100.0), (760.0, 490.0)))
    _write(tmp_path, 'speed_amp_dw_fp32.json', _speed(
        *models, (210.0, 100.0), (1600.0, 480.0)))
    _write(tmp_path, 'speed_e3d_channels_last.json', _speed(
        *models, (148.0, 114.0), (890.0, 670.0)))
    _write(tmp_path, 'speed_amp_compile.rc', '124\n')
    _write(tmp_path, 'speed_e3d_channels_last.rc', '0\n')
    _write(tmp_path, 'speed_amp_triton.rc', 'skipped\n')
    _write(tmp_path, 'stream_b1.json', dict(
        arch='E3D-S', frames=13, size=160, batch=1, runtimes=dict(torch=dict(
            ms_per_frame=dict(whole=dict(median=0.8)),
            stream_ratio=dict(median=15.0), static_kind='CUDA graph',
            static_ratio=dict(median=1.2), static_max_abs_diff=1e-6))))
    _write(tmp_path, 'stream_b1.rc', '0\n')
    _write(tmp_path, 'memory.json', dict(rows=[dict(
        arch='E3D-M', frames=16, size=224, batch=8, predicted=4e9,
        held=4.2e9, peak=4.8e9, base=3e7)]))
    _write(tmp_path, 'train.rc', '0\n')
    _write(tmp_path, 'train.txt', "type='AmpOptimWrapper'\n"
           'Epoch(val) [1][25/25]    acc/top1: 0.4250  acc/top5: 0.9\n')
    _write(tmp_path, 'test.rc', '0\n')
    _write(tmp_path, 'test.txt',
           'Epoch(test) [25/25]    acc/top1: 0.4250  acc/top5: 0.9\n')
    result = run_table(tmp_path)
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    by_figure = {(r[0], r[2]): r for r in table}
    amp = by_figure[('2 AMP', 'E3D train clips/s AMP / fp32 (separate '
                     'runs)')]
    # the best AMP configuration: depthwise_fp32, 210 / 150
    assert amp[1] == 'amp_dw_fp32' and amp[3:] == ['1.40', '>= 1.3', 'yes']
    train = by_figure[('2 train', 'E3D train clips/s (best config)')]
    assert train[1] == 'amp_dw_fp32' and train[3:] == ['210.0', '>= 300',
                                                       'NO']
    versus = by_figure[('2 train', 'E3D / X3D train clips/s, same run')]
    assert versus[3:] == ['2.10', '>= 1.5', 'yes']
    infer = by_figure[('2 infer', 'E3D infer clips/s (best config)')]
    assert infer[3:] == ['1600.0', '>= 1500', 'yes']
    layout = by_figure[('3 layout', 'E3D(channels_last=True) / contiguous '
                        'train clips/s')]
    assert layout[3:] == ['0.99', '>= 0.95', 'yes']
    fp32_train = [r for r in table if r[:3] == [
        'speed', 'fp32', 'train clips/s E3D-M / X3D-M']][0]
    assert fp32_train[3] == '150.0 / 115.0, x1.30 [1.25-1.35], bw 15%'
    share = [r for r in table if r[2].startswith('train depthwise share')]
    assert share[0][3] == 'E3D-M 50% of 48.0 ms'
    assert ['speed', 'amp_compile', 'run', 'failed (exit 124)'] in table
    assert ['speed', 'amp_triton', 'run', 'skipped (time budget)'] in table
    graph = by_figure[('4 stream', 'static stream (CUDA graph) / whole')]
    assert graph[3:] == ['1.20 (max abs diff 1e-06)', '<= 1.3', 'yes']
    functional = by_figure[('4 stream', 'functional stream_step / whole')]
    assert functional[3:] == ['15.00', '<= 1.3', 'NO']
    memory = by_figure[('memory', 'activation_bytes x batch vs measured')]
    assert memory[3] == ('held/predicted 1.050, peak/predicted 1.200 '
                         '(4.47 GiB)')
    train_row, test_row = [r for r in table if r[0] == '5 cuda path']
    assert train_row[1:] == ['XS recipe (AMP)', 'dist_train.sh CONFIG 1, '
                             '1 epoch', 'exit 0; val top1 0.425', 'exit 0',
                             'yes']
    assert test_row[3:] == ['exit 0; test top1 0.425', 'exit 0', 'yes']


def test_table_of_an_empty_folder_and_bad_usage(tmp_path):
    result = run_table(tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip() == f'no results in {tmp_path}'
    result = run_table(tmp_path / 'missing')
    assert result.returncode == 2
    assert result.stderr.strip() == (
        'usage: python bench/gpu_check_table.py RESULTS_DIR')


def test_smoke_mode_runs_the_memory_and_stream_parts(tmp_path):
    """Also: with the device tool's $OUT set and no $RESULTS, the results
    stay in $TMPDIR/gpu_check and two files come back in $OUT, the packed
    results and the table."""
    out, tmp = tmp_path / 'out', tmp_path / 'tmp'
    out.mkdir()
    tmp.mkdir()
    result = run_check(600, OUT=str(out), TMPDIR=str(tmp),
                       PARTS='stream memory')
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    results = tmp / 'gpu_check'
    for name in ('stream_b1', 'stream_b8', 'memory'):
        assert (results / f'{name}.rc').read_text().strip() == '0'
    assert sorted(os.listdir(out)) == ['gpu_check_results.tar.gz',
                                       'table.txt']
    printed = printed_table(result)
    assert printed.startswith((out / 'table.txt').read_text())
    with tarfile.open(out / 'gpu_check_results.tar.gz') as pack:
        names = set(pack.getnames())
    assert {'./stream_b8.json', './memory.rc', './table.txt'} <= names
    stream = json.loads((results / 'stream_b8.json').read_text())
    assert stream['batch'] == 8 and stream['arch'] == 'E3D-XS'
    table = rows(printed)
    static = [r for r in table if r[0] == '4 stream'
              and r[2] == 'static stream (eager) / whole']
    assert len(static) == 2
    memory = [r for r in table if r[0] == 'memory']
    assert [r[1] for r in memory] == ['E3D-XS 4x32, batch 1',
                                      'E3D-XS 4x32, batch 2']
    assert memory[0][3] == 'held/predicted 1.000'
    assert not any(r[0].startswith('speed') for r in table)


def test_train_part_runs_dist_train_with_the_scripts_python(tmp_path):
    """tools/dist_train.sh runs `python`: the script makes that its own
    $PYTHON, also when $PYTHON's folder has no `python` (an image with only
    python3) and another `python` comes first on PATH."""
    own, other = tmp_path / 'own', tmp_path / 'other'
    own.mkdir()
    other.mkdir()
    # $PYTHON: says so when it starts torchrun, then is this interpreter
    (own / 'py3').write_text(
        '#!/bin/sh\ncase "$*" in *torch.distributed.run*) '
        f'echo RIGHT-PYTHON;; esac\nexec "{sys.executable}" "$@"\n')
    (other / 'python').write_text('#!/bin/sh\necho WRONG-PYTHON\nexit 97\n')
    for path in (own / 'py3', other / 'python'):
        path.chmod(0o755)
    out = tmp_path / 'out'
    # LIMIT 2: the train part is stopped after 4 s, the start is what counts
    result = run_check(300, RESULTS=str(out), PARTS='train', LIMIT='2',
                       PYTHON=str(own / 'py3'),
                       PATH=f'{other}:{os.environ["PATH"]}')
    assert (out / 'data.rc').read_text().strip() == '0', result.stdout
    train = (out / 'train.txt').read_text()
    assert 'RIGHT-PYTHON' in train and 'WRONG-PYTHON' not in train, train


@pytest.mark.slow
def test_smoke_mode_runs_every_speed_configuration(tmp_path):
    """The speed and compile parts' command lines on a CPU, the AMP ones in
    bfloat16 (depthwise_fp32, the Triton option, folded BN, compiled), the
    Triton one profiled: each exits 0 and gives train and infer figures
    for both models, and the table checks its targets from them."""
    result = run_check(900, RESULTS=str(tmp_path), PARTS='speed compile')
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    configs = {'fp32': ('train', 'infer'), 'amp': ('train', 'infer'),
               'amp_dw_fp32': ('train', 'infer'),
               'amp_triton': ('train', 'infer'), 'amp_fuse_bn': ('infer', ),
               'e3d_channels_last': ('train', 'infer'),
               'amp_compile': ('train', )}
    for name, modes in configs.items():
        assert (tmp_path / f'speed_{name}.rc').read_text().strip() == '0', (
            (tmp_path / f'speed_{name}.txt').read_text()[-2000:])
        figures = json.loads((tmp_path / f'speed_{name}.json').read_text())
        assert sorted(figures['modes']) == sorted(modes)
        for mode in modes:
            clips = figures['modes'][mode]['clips_s']
            assert set(clips) == {'E3D-XS', 'X3D-M'}
            assert all(c['median'] > 0 for c in clips.values())
    triton = json.loads((tmp_path / 'speed_amp_triton.json').read_text())
    assert triton['modes']['train']['profile']['E3D-XS']['dw_ms'] > 0
    amp = json.loads((tmp_path / 'speed_amp_dw_fp32.json').read_text())
    traffic = amp['models']['E3D-XS']['traffic']['train']
    assert (traffic['element_bytes'], traffic['depthwise_bytes']) == (2, 4)
    table = rows(printed_table(result))
    targets = {r[2]: r for r in table if r[0][0].isdigit()}
    assert targets['E3D train clips/s AMP / fp32 (separate runs)'][-1] in (
        'yes', 'NO')
    assert 'E3D(channels_last=True) / contiguous train clips/s' in targets
