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
