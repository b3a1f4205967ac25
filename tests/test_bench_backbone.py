"""bench/backbone_speed.py and its interleaving helper bench/_interleave.py:
the spread and verdict rules, the depthwise-conv accounting of the profile,
the per-round ratios, and a tiny interleaved run on the CPU."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from tests.helpers import ROOT, load_tool

BENCH = osp.join(ROOT, 'bench', 'backbone_speed.py')


@pytest.fixture(scope='module')
def bench():
    """The bench script as a module."""
    return load_tool(BENCH)


@pytest.fixture(scope='module')
def interleave(bench):
    """bench/_interleave.py, as the bench imported it."""
    return sys.modules['_interleave']


def test_spread_median_quartiles_range_and_sides(interleave):
    stats = interleave.spread([1.4, 0.9, 1.2, 1.3, 1.25, 1.0])
    assert stats['n'] == 6
    assert stats['median'] == pytest.approx(1.225)
    assert stats['q1'] == pytest.approx(1.05)
    assert stats['q3'] == pytest.approx(1.2875)
    assert (stats['min'], stats['max']) == (0.9, 1.4)
    # 1.0 itself is on neither side.
    assert (stats['above'], stats['below']) == (4, 1)
    one = interleave.spread([2.0])
    assert one['q1'] == one['q3'] == one['median'] == 2.0


def test_sign_test_p_values(interleave):
    assert interleave.sign_test_p(9, 0) == pytest.approx(2 / 512)
    assert interleave.sign_test_p(8, 1) == pytest.approx(20 / 512)
    assert interleave.sign_test_p(1, 8) == pytest.approx(20 / 512)
    assert interleave.sign_test_p(7, 2) == pytest.approx(92 / 512)
    assert interleave.sign_test_p(7, 0) == pytest.approx(2 / 128)
    assert interleave.sign_test_p(0, 0) == 1.0
    assert interleave.min_rounds() == 6


@pytest.mark.parametrize('ratios, expected', [
    # One round disturbed, however much, does not decide.
    ([1.4, 0.1, 1.2, 1.3, 1.25, 1.5, 1.3, 1.2, 1.1], 'above'),
    ([0.6, 0.7, 9.0, 0.65, 0.72, 0.8, 0.7, 0.6, 0.9], 'below'),
    # Two rounds of nine on the other side: cannot tell.
    ([1.4, 0.9, 0.95, 1.3, 1.25, 1.5, 1.3, 1.2, 1.1], None),
    # With 7 rounds all must agree; with 5, never a verdict.
    ([1.44, 1.05, 1.47, 1.2, 1.3, 1.1, 1.25], 'above'),
    ([1.44, 0.95, 1.47, 1.2, 1.3, 1.1, 1.25], None),
    ([2.0, 2.1, 2.2, 2.3, 2.4], None),
    # Ties with the threshold count for neither side.
    ([1.0, 1.0, 1.0, 1.1, 1.2, 1.3, 1.2, 1.1, 1.3], 'above'),
])
def test_verdict_is_a_sign_test_over_rounds(interleave, ratios, expected):
    assert interleave.verdict(interleave.spread(ratios)) == expected


def test_verdict_basis_words(interleave):
    stats = interleave.spread([0.9] * 8 + [1.1])
    assert interleave.verdict_basis(stats) == (
        '8 of 9 rounds', pytest.approx(20 / 512), 0.05)


def test_interleave_alternates_the_order(interleave):
    calls = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def request(self, **message):
            calls.append(self.name)
            return dict(name=self.name, **message)

    rounds = interleave.interleave(
        {'A': Fake('A'), 'B': Fake('B')}, 4, dict(op='steps', n=2))
    assert calls == ['A', 'B', 'B', 'A', 'A', 'B', 'B', 'A']
    assert rounds[1] == {'B': dict(name='B', op='steps', n=2),
                         'A': dict(name='A', op='steps', n=2)}


_WORKER = """
import sys
sys.path.insert(0, {bench_dir!r})
import _interleave


def handle(request):
    if request['op'] == 'ready':
        print('a library printing on stdout')
        return dict(ok=1)
    if request['op'] == 'double':
        return dict(value=2 * request['x'])
    if request['op'] == 'bad input':
        raise _interleave.WorkerError('x: too large', user_error=True)
    raise ValueError('a bug')


sys.exit(_interleave.serve(handle))
"""


def test_workers_answer_requests_and_report_errors(interleave, tmp_path):
    script = tmp_path / 'worker.py'
    script.write_text(_WORKER.format(
        bench_dir=osp.join(ROOT, 'bench')))
    workers, ready = interleave.start_workers(
        ['a', 'b'], lambda name: [sys.executable, str(script)])
    try:
        assert ready == {'a': dict(ok=1), 'b': dict(ok=1)}
        rounds = interleave.interleave(workers, 2, dict(op='double', x=3))
        assert rounds == [{'a': dict(value=6), 'b': dict(value=6)}] * 2
        with pytest.raises(interleave.WorkerError) as user:
            workers['a'].request(op='bad input')
        assert user.value.user_error
        assert str(user.value) == 'a: x: too large'
        with pytest.raises(interleave.WorkerError) as bug:
            workers['b'].request(op='other')
        assert not bug.value.user_error
        lines = str(bug.value).splitlines()
        assert lines[0] == 'b: ValueError: a bug'
        # The worker's own traceback comes with it.
        assert lines[-1] == 'ValueError: a bug'
        assert workers['b'].proc.returncode == 1
    finally:
        for w in workers.values():
            w.close()
    assert workers['a'].proc.returncode == 2


def test_summarise_forms_one_ratio_per_round(bench):
    data = dict(
        settings=dict(models=['E3D-M', 'X3D-M'], batch=2),
        models={'E3D-M': dict(flops=1.0e9), 'X3D-M': dict(flops=2.0e9)},
        modes=dict(train=dict(rounds=[
            {'E3D-M': [0.5, 0.5], 'X3D-M': [1.0, 1.0]},
            {'E3D-M': [0.25, 0.25], 'X3D-M': [1.0, 1.0]},
            {'E3D-M': [1.0, 1.0], 'X3D-M': [0.5, 0.5]},
        ])))
    mode = bench.summarise(data)['modes']['train']
    assert mode['clips_s_rounds']['E3D-M'] == [4.0, 8.0, 2.0]
    assert mode['clips_s_rounds']['X3D-M'] == [2.0, 2.0, 4.0]
    assert mode['ratio_rounds'] == [2.0, 4.0, 0.5]
    # E3D-M does half the FLOPs per clip.
    assert mode['gflops_ratio_rounds'] == [1.0, 2.0, 0.25]
    assert mode['gflops_ratio']['median'] == 1.0
    assert mode['verdict'] is None
    line = bench.verdict_line('train', mode, 'E3D-M', 'X3D-M')
    assert line == ('verdict (train): E3D-M no slower than X3D-M per FLOP: '
                    'UNDECIDED (GFLOPs/s ratio above 1 in 1 of 3 rounds, '
                    'below in 1; sign test p = 1.000, not < 0.05; a verdict '
                    'needs at least 6 rounds)')


class _Net(nn.Module):
    """Two depthwise 3D convs among dense, grouped and 1-channel ones."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            # One input channel: weight (8, 1, ...) but not depthwise.
            nn.Conv3d(1, 8, 3, padding=1),
            nn.Conv3d(8, 8, 3, padding=1, groups=8),
            nn.Conv3d(8, 16, 1),
            nn.Conv3d(16, 16, (1, 5, 5), padding=(0, 2, 2), groups=16),
            # Grouped, not depthwise.
            nn.Conv3d(16, 16, 3, padding=1, groups=4))

    def forward(self, x):
        return self.layers(x)


def test_profile_finds_the_depthwise_convs(bench):
    torch.manual_seed(0)
    net = _Net()
    assert bench.count_depthwise(net) == 2
    clips = torch.randn(2, 1, 4, 16, 16)

    def train_step():
        net.zero_grad(set_to_none=True)
        net(clips).mean().backward()

    train = bench.profile_steps(train_step, 2, lambda: None, False)
    assert (train['dw_forward'], train['dw_backward']) == (2, 2)
    assert 0 < train['dw_ms'] < train['conv_ms'] <= train['step_ms']
    assert 'kernel_ms' not in train

    def infer_step():
        with torch.inference_mode():
            net(clips)

    infer = bench.profile_steps(infer_step, 2, lambda: None, False)
    assert (infer['dw_forward'], infer['dw_backward']) == (2, 0)
    assert 0 < infer['dw_ms'] < infer['conv_ms'] <= infer['step_ms']


def test_worker_gets_the_options_but_not_models_or_json(bench):
    argv = ['--models', 'E3D-S', 'X3D-M', '--amp', '--json', 'out.json',
            '--rounds=5', '--json=x.json', '--models=E3D-M']
    assert bench.worker_argv(argv) == ['--amp', '--rounds=5']


@pytest.mark.parametrize('argv, message', [
    (['--models', 'E3D-M', 'E3D-M'],
     'error: --models: give two different backbones (see --help)'),
    (['--amp-dtype', 'float16'],
     'error: --amp-dtype needs --amp (see --help)'),
    (['--rounds', '0'],
     'error: argument --rounds: must be in 1..1000, got 0 (see --help)'),
])
def test_bad_options_are_one_line(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == message


def test_amp_dtype_defaults_per_device(bench):
    assert bench.parse_args(['--amp']).amp_dtype == 'bfloat16'
    assert bench.parse_args(['--amp', '--device', 'cuda']).amp_dtype == (
        'float16')
    assert bench.parse_args([]).amp_dtype is None


def _run(*argv, **env):
    return subprocess.run([sys.executable, BENCH, *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **env))


def test_cuda_without_a_device_is_one_line():
    # No device is visible, on a GPU machine too.
    proc = _run('--device', 'cuda', '--rounds', '3', CUDA_VISIBLE_DEVICES='')
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f'error: --device cuda: torch {torch.__version__} sees no '
        'CUDA device here; use --device cpu')


@pytest.mark.slow
def test_tiny_interleaved_cpu_run(tmp_path):
    out = tmp_path / 'speed.json'
    proc = _run('--frames', '4', '--size', '32', '--batch', '1',
                '--rounds', '6', '--steps', '1', '--warmup', '1',
                '--threads', '1', '--profile', '--profile-steps', '2',
                '--channels-last', '--json', str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert set(data['modes']) == {'train', 'infer'}
    e3d, x3d = data['models']['E3D-M'], data['models']['X3D-M']
    assert e3d['cost_flops'] == e3d['flops'] > 0
    assert x3d['flops'] > 0
    assert e3d['n_depthwise'] == x3d['n_depthwise'] == 27
    for name, mode in data['modes'].items():
        assert len(mode['rounds']) == 6
        for r in mode['rounds']:
            assert len(r['E3D-M']) == len(r['X3D-M']) == 1
        for (a, b), ratio in zip(
                zip(mode['clips_s_rounds']['E3D-M'],
                    mode['clips_s_rounds']['X3D-M']), mode['ratio_rounds']):
            assert ratio == pytest.approx(a / b)
        for p in mode['profile'].values():
            assert p['dw_forward'] == 27
            assert p['dw_backward'] == (27 if name == 'train' else 0)
            assert 0 < p['dw_ms'] < p['conv_ms'] <= p['step_ms']
        answer = {'above': 'YES', 'below': 'NO', None: 'UNDECIDED'}[
            mode['verdict']]
        assert (f'verdict ({name}): E3D-M no slower than X3D-M per FLOP: '
                f'{answer}') in proc.stdout
    _check_memory_figures(data, ['E3D-M', 'X3D-M'], ['train', 'infer'])


# --- memory-bandwidth figures, --e3d-options, --compile


def test_e3d_options_are_python_literals_or_strings(bench):
    args = bench.parse_args(
        ['--e3d-options', 'with_cp=True', "act_cfg={'type': 'SiLU'}",
         'frozen_stages=1', 'out_indices=(2, 4)'])
    assert args.e3d_kwargs == dict(with_cp=True, act_cfg={'type': 'SiLU'},
                                   frozen_stages=1, out_indices=(2, 4))
    assert bench.parse_e3d_options(['a=hello', 'b = 1.5', 'c=x=y']) == dict(
        a='hello', b=1.5, c='x=y')
    assert bench.parse_args([]).e3d_kwargs == {}
    # the workers get them
    assert bench.worker_argv(['--models', 'E3D-S', 'X3D-M', '--e3d-options',
                              'with_cp=True', '--compile']) == [
        '--e3d-options', 'with_cp=True', '--compile']


def test_compile_mode_defaults_and_needs_compile(bench):
    assert bench.parse_args(['--compile']).compile_mode == 'default'
    assert bench.parse_args(
        ['--compile', '--compile-mode', 'max-autotune']).compile_mode == (
            'max-autotune')
    assert bench.parse_args([]).compile_mode is None
    assert bench.parse_args([]).bandwidth_mib == 256
    assert bench.parse_args(['--device', 'cuda']).bandwidth_mib == 1024


@pytest.mark.parametrize('argv, message', [
    (['--e3d-options', 'depth=3'],
     "error: --e3d-options: E3D has no argument 'depth'; it takes "),
    (['--e3d-options', 'with_cp=yes'],
     "error: --e3d-options: with_cp must be True or False, got 'yes' (see "
     '--help)'),
    (['--e3d-options', 'frozen_stages=1.0'],
     'error: --e3d-options: frozen_stages must be an int (-1 freezes '
     'nothing), got 1.0 (see --help)'),
    (['--e3d-options', 'arch=E3D-S'],
     'error: --e3d-options: arch is set by --models (the preset of each E3D '
     'model) (see --help)'),
    (['--e3d-options', 'with_cp'],
     "error: --e3d-options: 'with_cp' is not KEY=VALUE (e.g. with_cp=True) "
     '(see --help)'),
    (['--e3d-options', 'with_cp=True', 'with_cp=False'],
     'error: --e3d-options: with_cp is given twice (see --help)'),
    (['--compile-mode', 'max-autotune'],
     'error: --compile-mode needs --compile (see --help)'),
    (['--compile', '--compile-mode', 'fast'],
     # (how argparse quotes the choices depends on the Python version)
     "error: argument --compile-mode: invalid choice: 'fast' (choose from "),
    (['--bandwidth-mib', '0'],
     'error: argument --bandwidth-mib: must be in 1..65536, got 0 (see '
     '--help)'),
])
def test_bad_new_options_are_one_line(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(message)
    if 'no argument' in message:
        # every E3D argument the bench does not set, whatever they are now
        import inspect

        from e3d_plugin.models import E3D
        for name in inspect.signature(E3D).parameters:
            if name not in ('arch', 'structure', 'structure_file'):
                assert name in lines[0]


def test_bandwidth_is_the_best_copy(bench, monkeypatch):
    # each copy "takes" 10 ms, the third 4 ms
    ticks = iter([0.0, 0.010, 1.0, 1.010, 2.0, 2.004, 3.0, 3.010, 4.0, 4.010])
    monkeypatch.setattr(bench.time, 'perf_counter', lambda: next(ticks))
    assert bench.measure_bandwidth('cpu', 2) == pytest.approx(
        2 * 2 * 2**20 / 0.004 / 1e9)
    monkeypatch.undo()
    measured = bench.measure_bandwidth('cpu', 8)
    assert 0.05 < measured < 5000  # GB/s of any machine's memory


def test_step_traffic_of_e3d_and_x3d(bench):
    from e3d_plugin.traffic import module_traffic, structure_traffic
    args = bench.parse_args(['--frames', '4', '--size', '32', '--batch',
                             '2', '--amp'])
    e3d = bench.build_model('E3D-XS')
    found = bench.step_traffic('E3D-XS', e3d, args)
    for mode in ('train', 'infer'):
        expected = structure_traffic('E3D-XS', 32, 4, 2, 2, mode)
        assert found[mode] == dict(expected.as_dict(), source='structure',
                                   element_bytes=2, depthwise_bytes=2)
    # depthwise convs in float32 under autocast: at 4 bytes, with casts
    dw_fp32 = bench.build_model('E3D-XS', dict(depthwise_fp32=True))
    found = bench.step_traffic('E3D-XS', dw_fp32, args)
    for mode in ('train', 'infer'):
        expected = structure_traffic('E3D-XS', 32, 4, 2, 2, mode, 4)
        assert found[mode] == dict(expected.as_dict(), source='structure',
                                   element_bytes=2, depthwise_bytes=4)
        assert expected.total > structure_traffic('E3D-XS', 32, 4, 2, 2,
                                                  mode).total
    # an option that changes the work: the count of the built model
    frozen = bench.build_model('E3D-XS', dict(frozen_stages=1))
    found = bench.step_traffic('E3D-XS', frozen, args)
    assert found['train']['source'] == 'hooks, the structure count differs'
    assert found['train']['total'] == module_traffic(
        frozen, (2, 3, 4, 32, 32), 2, 'train').total
    assert found['train']['total'] < structure_traffic(
        'E3D-XS', 32, 4, 2, 2, 'train').total
    x3d = bench.build_model('X3D-M')
    found = bench.step_traffic('X3D-M', x3d, bench.parse_args(
        ['--frames', '2', '--size', '32', '--batch', '1', '--modes',
         'infer']))
    assert list(found) == ['infer']
    assert found['infer']['source'] == 'hooks'
    assert found['infer']['total'] == module_traffic(
        x3d, (1, 3, 2, 32, 32), 4, 'infer').total


def test_summarise_adds_the_fraction_of_the_bandwidth_limit(bench):
    by_kind = dict(conv=4e9, depthwise=2e9, norm_act=3e9, other=0.5e9,
                   update=0.5e9)
    traffic = dict(total=10e9, by_kind=by_kind, source='structure')
    data = dict(
        settings=dict(models=['E3D-M', 'X3D-M'], batch=2),
        models={'E3D-M': dict(flops=1e9, bandwidth_gbs=100.0,
                              traffic=dict(train=traffic)),
                'X3D-M': dict(flops=2e9)},
        modes=dict(train=dict(rounds=[
            {'E3D-M': [0.5, 0.3], 'X3D-M': [1.0]},
            {'E3D-M': [0.2], 'X3D-M': [1.0]},
            {'E3D-M': [1.0], 'X3D-M': [1.0]}])))
    mode = bench.summarise(data)['modes']['train']
    # no figures for a model without them (X3D-M here)
    assert list(mode['memory']) == ['E3D-M']
    memory = mode['memory']['E3D-M']
    # 10 GB at 100 GB/s: 100 ms; median of the rounds' mean steps: 400 ms
    assert memory['floor_ms'] == pytest.approx(100)
    assert memory['step_ms'] == pytest.approx(400)
    assert memory['fraction'] == pytest.approx(0.25)
    assert memory['bytes'] == 10e9 and memory['bandwidth_gbs'] == 100
    lines = bench.memory_lines('train', mode, data['models'],
                               ['E3D-M', 'X3D-M'])
    assert lines == [
        'E3D-M   10 GB/step (counted from structure; conv 40%, depthwise '
        '20%, norm+act 30%, other 5%, update 5%): floor 100 ms at 100.0 '
        'GB/s, median step 400 ms: 25.0% of the bandwidth limit']


def _check_memory_figures(data, names, modes):
    """The figures of a run's JSON: bytes from the counts, floor and
    fraction from the measured bandwidth and steps."""
    import statistics

    from e3d_plugin.traffic import structure_traffic
    s = data['settings']
    for name in names:
        m = data['models'][name]
        assert m['bandwidth_gbs'] > 0.05
        for mode_name in modes:
            traffic = m['traffic'][mode_name]
            if name.startswith('E3D'):
                assert traffic['source'] == 'structure'
                assert traffic['total'] == structure_traffic(
                    name, s['size'], s['frames'], s['batch'], 4,
                    mode_name).total
            else:
                assert traffic['source'] == 'hooks'
            assert sum(traffic['by_kind'].values()) == traffic['total']
            mode = data['modes'][mode_name]
            memory = mode['memory'][name]
            step = statistics.median(
                sum(r[name]) / len(r[name]) for r in mode['rounds'])
            floor = traffic['total'] / (m['bandwidth_gbs'] * 1e9)
            assert memory['step_ms'] == pytest.approx(step * 1e3)
            assert memory['floor_ms'] == pytest.approx(floor * 1e3)
            assert memory['fraction'] == pytest.approx(floor / step)
            assert 0 < memory['fraction'] < 1


def test_tiny_cpu_run_reports_the_bandwidth_limit(tmp_path):
    out = tmp_path / 'speed.json'
    proc = _run('--models', 'E3D-XS', 'X3D-M', '--frames', '4', '--size',
                '32', '--batch', '1', '--rounds', '2', '--steps', '1',
                '--warmup', '1', '--threads', '1', '--modes', 'infer',
                '--bandwidth-mib', '16', '--e3d-options',
                'fast_depthwise=False', '--fuse-bn', '--json', str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data['settings']['e3d_options'] == ['fast_depthwise=False']
    assert data['settings']['fuse_bn'] is True
    _check_memory_figures(data, ['E3D-XS', 'X3D-M'], ['infer'])
    assert data['models']['X3D-M']['traffic']['infer']['total'] > (
        data['models']['E3D-XS']['traffic']['infer']['total'])
    lines = proc.stdout.splitlines()
    assert 'E3D options fast_depthwise=False' in lines[0]
    assert ', BN folded (infer)' in lines[0]
    assert lines[1 if 'note:' not in lines[1] else 2].startswith(
        '  infer round 1/2')
    assert any(line.startswith('  E3D-XS  0.00') and 'GB/step (counted from '
               'structure; conv ' in line and line.endswith(
                   'of the bandwidth limit') for line in lines)
    assert any(line.startswith('  X3D-M   0.0') and 'GB/step (counted from '
               'hooks; conv ' in line for line in lines)
    assert any(line.startswith('copy GB/s: each worker') and 'of 16 MiB'
               in line for line in lines)


def test_a_bad_e3d_value_found_by_the_worker_is_one_line():
    # check_arguments takes any int; the range is checked by the build
    proc = _run('--models', 'E3D-XS', 'E3D-S', '--frames', '2', '--size',
                '16', '--batch', '1', '--rounds', '1', '--warmup', '1',
                '--threads', '1', '--e3d-options', 'frozen_stages=10')
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith('error: E3D-')
    assert lines[0].endswith(
        ': --e3d-options: frozen_stages must be in -1..4, got 10') or (
            lines[0].endswith('frozen_stages must be in -1..6, got 10'))


@pytest.mark.slow
def test_tiny_compiled_cpu_run(tmp_path):
    """torch.compile with inductor (gcc here): minutes on a small CPU."""
    out = tmp_path / 'speed.json'
    proc = _run('--models', 'E3D-XS', 'E3D-S', '--frames', '2', '--size',
                '16', '--batch', '1', '--rounds', '1', '--steps', '1',
                '--warmup', '1', '--threads', '1', '--compile',
                '--compile-mode', 'default', '--bandwidth-mib', '16',
                '--json', str(out))
    assert proc.returncode == 0, proc.stderr
    assert ', torch.compile(default)' in proc.stdout.splitlines()[0]
    data = json.loads(out.read_text())
    assert data['settings']['compile'] is True
    _check_memory_figures(data, ['E3D-XS', 'E3D-S'], ['train', 'infer'])
    for name in ('E3D-XS', 'E3D-S'):
        m = data['models'][name]
        assert m['cost_flops'] == m['flops'] > 0
