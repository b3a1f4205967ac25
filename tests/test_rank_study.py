"""Rank study: sampler, statistics, results file, resume, tool errors."""
import json
import math
import os
import os.path as osp
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from mmengine.config import Config

from e3d_plugin.cost import compute_cost
from e3d_plugin.structure import Structure, load_structure
from e3d_plugin.study import (NETWORK_PROXIES, PROXIES, RankStudy,
                              StudyError, append_result,
                              build_searcher, finished_runs, rank_correlation,
                              read_accuracy, read_results,
                              sample_architectures, top_k_overlap,
                              trained_rank, write_run_config)
from tests.helpers import ROOT, load_tool, stand_in_train_config

SEARCH_XS = osp.join(ROOT, 'configs', 'search_e3d_xs.py')
TRAIN_XS = osp.join(ROOT, 'configs', 'e3d',
                    'e3d_xs_8x4x1_synthetic-motion.py')
FLOPS_BUDGET = 4.0e7  # configs/search_e3d_xs.py


def xs_searcher(**options):
    cfg = Config.fromfile(SEARCH_XS)
    cfg.merge_from_dict(options)
    return build_searcher(cfg, num_candidates=2000)


@pytest.fixture(scope='module')
def sample12():
    return sample_architectures(xs_searcher(), 12, seed=0)


# ----------------------------------------------------------------------
# sampler
def test_sampler_distinct_in_budget_with_best_start_and_band(sample12):
    archs = sample12['archs']
    structures = [a['structure'] for a in archs]
    assert len(archs) == 12 and len(set(structures)) == 12
    for arch in archs:
        cost = compute_cost(arch['structure'], 64, 8)
        flops, params, layers = cost
        assert flops <= FLOPS_BUDGET and layers <= 20
        assert arch['cost'] == cost._asdict()
        assert arch['in_band'] == (flops >= 0.8 * FLOPS_BUDGET)
    assert sample12['band_flops'] == pytest.approx(0.8 * FLOPS_BUDGET)
    assert sum(a['in_band'] for a in archs) >= 6
    roles = [a['role'] for a in archs]
    assert roles.count('best') == 1 and roles.count('start') == 1
    best = xs_searcher().searcher.run()
    by_role = {a['role']: a for a in archs}
    assert by_role['best']['structure'] == best['best_structure']
    assert by_role['best']['score'] == pytest.approx(best['best_score'])
    assert by_role['start']['structure'] == load_structure('E3D-XS')
    assert [a['id'] for a in archs] == [f'a{i:02d}' for i in range(12)]
    scores = [a['score'] for a in archs]
    assert scores == sorted(scores)
    assert sample12['notes'] == []


def test_sampler_spans_the_score_range(sample12):
    searcher = xs_searcher()
    rng = random.Random(123)
    template = load_structure('E3D-XS')
    randoms = []
    for _ in range(1000):
        structure = searcher.space.sample(template, rng)
        flops, _, layers = compute_cost(structure, 64, 8)
        if flops <= FLOPS_BUDGET and layers <= 20:
            randoms.append(searcher.score(structure))
    scores = [a['score'] for a in sample12['archs']]
    # the lowest stratum gives the pool's lowest score, the best the highest
    assert min(scores) <= np.percentile(randoms, 2)
    assert max(scores) >= max(randoms)
    # no stratum is empty: no gap wider than a third of the range
    gaps = np.diff(sorted(scores))
    assert gaps.max() < (max(scores) - min(scores)) / 3
    band = sorted(a['score'] for a in sample12['archs'] if a['in_band'])
    assert band[-1] - band[0] > (max(scores) - min(scores)) / 3


def test_sampler_deterministic_under_seed(sample12):
    again = sample_architectures(xs_searcher(), 12, seed=0)
    assert [a['structure'] for a in again['archs']] == [
        a['structure'] for a in sample12['archs']]
    other = sample_architectures(xs_searcher(), 12, seed=1)
    assert [a['structure'] for a in other['archs']] != [
        a['structure'] for a in sample12['archs']]


def test_sampler_start_over_budget_is_left_out_with_a_note():
    searcher = xs_searcher(**{'search.budgets.flops': 3.0e7})
    sample = sample_architectures(searcher, 6, seed=0)
    assert len(sample['notes']) == 1
    assert sample['notes'][0].startswith(
        'the starting structure is over the flops budget (flops 3.586e+07 '
        '> 3e+07)')
    assert 'start' not in [a['role'] for a in sample['archs']]
    assert all(a['cost']['flops'] <= 3.0e7 for a in sample['archs'])
    assert sum(a['in_band'] for a in sample['archs']) >= 3


def test_sampler_honours_the_memory_budgets():
    """Budgets below E3D-XS's own memory (10434048 bytes, 393216
    elements at 8x64x64): every structure drawn is within them."""
    budgets = {'search.budgets.activation_bytes': 9.0e6,
               'search.budgets.max_feature': 3.8e5}
    sample = sample_architectures(xs_searcher(**budgets), 6, seed=0)
    assert sample['notes'][0].startswith(
        'the starting structure is over the activation_bytes, max_feature '
        'budget (activation_bytes 1.043e+07 > 9e+06, max_feature 3.932e+05 '
        '> 3.8e+05)')
    for arch in sample['archs']:
        cost = compute_cost(arch['structure'], 64, 8)
        assert arch['cost'] == cost._asdict()
        assert cost.activation_bytes <= 9.0e6 and cost.max_feature <= 3.8e5
        assert cost.flops <= FLOPS_BUDGET and cost.layers <= 20


def tiny_space_options():
    """A space of exactly 4 structures: E3D-XS with body depths 1 or 2."""
    return {'space.kernels': [(3, 3)], 'space.width_multipliers': [1.0],
            'space.bottleneck_ratios': [3.0], 'space.max_first_depth': 1,
            'space.max_depth': 2}


def test_sampler_refuses_more_archs_than_the_space_gives():
    searcher = xs_searcher(**tiny_space_options())
    with pytest.raises(StudyError, match=r'--num-archs 5: the space gives '
                       r'only 4 distinct structures within the budgets'):
        sample_architectures(searcher, 5, seed=0)
    assert len(sample_architectures(xs_searcher(**tiny_space_options()), 4,
                                    seed=0)['archs']) == 4


# ----------------------------------------------------------------------
# statistics
def test_kendall_and_spearman_with_ties_against_hand_computed():
    x = [1, 2, 2, 3, 4]
    y = [1, 3, 2, 2, 5]
    # Pairs (i < j), 10 in all: concordant (0,1) (0,2) (0,3) (0,4) (1,4)
    # (2,4) (3,4) = 7; discordant (1,3) = 1; tied in x only (1,2); tied in
    # y only (2,3). tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2))
    # = 6 / sqrt(9 * 9).
    # Average ranks: x -> 1, 2.5, 2.5, 4, 5; y -> 1, 4, 2.5, 2.5, 5; both
    # centred on 3: dx = -2, -.5, -.5, 1, 2; dy = -2, 1, -.5, -.5, 2;
    # rho = sum(dx dy) / sqrt(sum dx^2 sum dy^2) = 7.25 / 9.5.
    stats = rank_correlation(x, y, n_resamples=200)
    assert stats['n'] == 5
    assert stats['kendall_tau'] == pytest.approx(6 / 9)
    assert stats['spearman_rho'] == pytest.approx(7.25 / 9.5)
    # A pair tied in both: (0,1). Others: D (0,2) (1,2); C (0,3) (1,3)
    # (2,3). n0 = 6, n1 = n2 = 1: tau-b = (3 - 2) / sqrt(5 * 5) = 0.2.
    # Ranks x 1.5, 1.5, 3, 4; y 2.5, 2.5, 1, 4 (mean 2.5): dx -1, -1, .5,
    # 1.5; dy 0, 0, -1.5, 1.5; rho = 1.5 / sqrt(4.5 * 4.5) = 1/3.
    stats = rank_correlation([1, 1, 2, 3], [2, 2, 1, 3], n_resamples=200)
    assert stats['kendall_tau'] == pytest.approx(0.2)
    assert stats['spearman_rho'] == pytest.approx(1 / 3)
    # reversed order: both flip sign exactly
    stats = rank_correlation([1, 2, 3, 4], [8, 6, 4, 2], n_resamples=200)
    assert stats['kendall_tau'] == pytest.approx(-1.0)
    assert stats['spearman_rho'] == pytest.approx(-1.0)


def test_bootstrap_interval_holds_the_estimate_and_is_seeded():
    x = np.arange(14, dtype=float)
    y = x + np.array([3, -2, 4, 0, -3, 5, 1, -4, 2, 0, -1, 3, -2, 1]) * 1.5
    first = rank_correlation(x, y, n_resamples=500, seed=0)
    again = rank_correlation(x, y, n_resamples=500, seed=0)
    other = rank_correlation(x, y, n_resamples=500, seed=1)
    for key in ('kendall_tau', 'spearman_rho'):
        low, high = first[f'{key}_ci']
        assert -1 <= low < first[key] < high <= 1
        assert again[f'{key}_ci'] == first[f'{key}_ci']
        assert other[f'{key}_ci'] != first[f'{key}_ci']
        assert other[key] == first[key]
    # more data, same relation: a narrower interval
    wide = rank_correlation(x[:7], y[:7], n_resamples=500, seed=0)
    assert np.diff(wide['spearman_rho_ci'])[0] > np.diff(
        first['spearman_rho_ci'])[0]


def test_degenerate_cases_give_nan_and_a_note():
    constant = rank_correlation([1, 2, 3, 4], [0.1] * 4)
    assert math.isnan(constant['kendall_tau'])
    assert math.isnan(constant['spearman_rho_ci'][0])
    assert constant['note'] == ('the accuracy is the same for every '
                                'architecture')
    flat = rank_correlation([5, 5, 5], [0.1, 0.2, 0.3])
    assert flat['note'] == 'the proxy is the same for every architecture'
    two = rank_correlation([1, 2], [0.1, 0.2])
    assert math.isnan(two['spearman_rho']) and two['n'] == 2
    assert two['note'] == '2 architectures; at least 3 are needed'
    # NaN accuracies (untrained architectures) are left out
    partial = rank_correlation([1, 2, 3, 4], [0.1, math.nan, 0.3, 0.2],
                               n_resamples=100)
    assert partial['n'] == 3
    assert partial['kendall_tau'] == pytest.approx(1 / 3)


def test_trained_rank_and_top_k_overlap():
    proxy = [0.1, 0.9, 0.5, 0.3]
    acc = [0.4, 0.6, 0.6, 0.2]
    assert trained_rank(proxy, acc) == 1  # tied for first
    assert trained_rank([0.9, 0.1, 0.5, 0.3], acc) == 3
    assert trained_rank([0.1, 0.2, 0.5, 0.9], acc) == 4
    assert top_k_overlap(proxy, acc, 2) == 2
    assert top_k_overlap([0.9, 0.1, 0.2, 0.8], acc, 2) == 0
    assert top_k_overlap(proxy, acc, 10) == 4


# ----------------------------------------------------------------------
# results file, run configs, accuracies
def test_results_file_drops_a_half_written_line(tmp_path):
    path = str(tmp_path / 'results.jsonl')
    append_result(path, dict(arch='a00', seed=0, status='done', final=0.5,
                             best=0.6))
    append_result(path, dict(arch='a01', seed=0, status='failed'))
    with open(path, 'ab') as f:
        f.write(b'{"arch": "a02", "seed": 0, "sta')
    records, notes = read_results(path)
    assert [r['arch'] for r in records] == ['a00', 'a01']
    assert notes == [f'{path}: dropped a half-written last line (31 bytes)']
    append_result(path, dict(arch='a02', seed=0, status='done', final=0.1,
                             best=0.2))
    records, notes = read_results(path)
    assert notes == [] and len(records) == 3
    assert set(finished_runs(records)) == {('a00', 0), ('a02', 0)}
    # a later record of a run wins
    append_result(path, dict(arch='a01', seed=0, status='done', final=0.3,
                             best=0.3))
    assert finished_runs(read_results(path)[0])[('a01', 0)]['final'] == 0.3


def test_run_config_replaces_structure_head_and_seed(tmp_path):
    structure = load_structure('E3D-XS')
    wider = Structure(structure[:-1] + (structure[-1]._replace(
        out_channels=320), ))
    path = write_run_config(str(tmp_path / 'config.py'), TRAIN_XS, wider, 7)
    cfg = Config.fromfile(path)
    backbone = cfg.model.backbone
    assert backbone.type == 'E3D' and backbone.arch is None
    assert backbone.structure is None
    assert load_structure(backbone.structure_file) == wider
    assert backbone.channels_last is True  # the recipe's settings stay
    assert cfg.model.cls_head.in_channels == 320
    assert cfg.model.cls_head.num_classes == 10
    assert cfg.randomness.seed == 7 and cfg.train_cfg.max_epochs == 12
    assert 'structure_file' in cfg.pretty_text  # mmengine can re-format it


def test_read_accuracy_from_mmengine_scalars(tmp_path):
    run = tmp_path / 'run' / '20240101_000000' / 'vis_data'
    run.mkdir(parents=True)
    lines = [dict(loss=2.3, step=1), {'acc/top1': 0.2, 'step': 1},
             dict(loss=1.9, step=2), {'acc/top1': 0.5, 'step': 2},
             {'acc/top1': 0.4, 'step': 3}]
    (run / 'scalars.json').write_text(
        '\n'.join(json.dumps(line) for line in lines) + '\n')
    assert read_accuracy(str(tmp_path / 'run')) == ([0.2, 0.5, 0.4],
                                                    [1, 2, 3])
    assert read_accuracy(str(tmp_path / 'none')) == ([], [])


# ----------------------------------------------------------------------
# training loop with a stand-in trainer: resume and kills
FAKE_TRAINER = '''
import json, os, signal, sys
config, run_dir = sys.argv[1], sys.argv[3]
name = os.path.basename(run_dir)
with open(os.environ['CALLS'], 'a') as f:
    f.write(name + '\\n')
if name == os.environ.get('KILL_STUDY_AT'):
    os.kill(os.getppid(), signal.SIGKILL)  # the study dies mid-run
    sys.exit(0)
if name == os.environ.get('KILL_RUN'):
    os.kill(os.getpid(), signal.SIGKILL)
if os.environ.get('DEVICES'):
    import time
    begin = time.time()
    # long enough for runs on two devices to overlap on a loaded machine
    time.sleep(1.5)
    with open(os.environ['DEVICES'], 'a') as f:
        f.write(f"{name} {os.environ.get('CUDA_VISIBLE_DEVICES')} "
                f"{begin} {time.time()}\\n")
structure = json.load(open(os.path.join(run_dir, 'structure.json')))
seed = int(open(config).read().split('seed=')[1].split(')')[0])
width = structure['blocks'][-2]['out']
out = os.path.join(run_dir, '20990101_000000', 'vis_data')
os.makedirs(out)
with open(os.path.join(out, 'scalars.json'), 'w') as f:
    for epoch, acc in ((1, 0.1), (2, width / 1000 + seed / 100)):
        f.write(json.dumps({'acc/top1': acc, 'step': epoch}) + '\\n')
'''


@pytest.fixture
def fake_setup(tmp_path):
    """A training config with (empty) data on disk, a stand-in trainer
    writing mmengine scalars, and a study factory using them."""
    train = stand_in_train_config(tmp_path, TRAIN_XS)
    trainer = tmp_path / 'fake_train.py'
    trainer.write_text(FAKE_TRAINER)
    calls = tmp_path / 'calls.txt'

    def study(work_dir, resume=False, **kwargs):
        return RankStudy(SEARCH_XS, str(train), str(tmp_path / work_dir),
                         num_archs=4, seeds=2, num_candidates=2000,
                         resume=resume, n_resamples=200,
                         train_command=[sys.executable, str(trainer)],
                         stream=open(os.devnull, 'w'), **kwargs)

    return dict(tmp=tmp_path, train=str(train), trainer=str(trainer),
                calls=calls, study=study)


def called(setup):
    path = setup['calls']
    runs = path.read_text().split() if path.exists() else []
    path.write_text('')
    return runs


def expected_acc(study):
    """What the stand-in trainer reports for every run of ``study``."""
    return {(arch['id'], seed): arch['structure'][-2]['out'] / 1000 +
            seed / 100 for arch in study.plan['archs']
            for seed in range(2)}


def test_study_trains_every_run_once_and_reports(fake_setup, monkeypatch):
    monkeypatch.setenv('CALLS', str(fake_setup['calls']))
    study = fake_setup['study']('whole')
    study.prepare()
    trained = study.train()
    assert called(fake_setup) == [f'a{i:02d}_seed{s}' for s in (0, 1)
                                  for i in range(4)]
    assert all(r['status'] == 'done' for r in trained)
    expected = expected_acc(study)
    assert {(r['arch'], r['seed']): r['final'] for r in trained} == (
        pytest.approx(expected))
    assert all(r['best'] == max(r['final'], 0.1) for r in trained)
    report = study.report()
    for arch in report['archs']:
        finals = [expected[(arch['id'], s)] for s in (0, 1)]
        assert arch['acc']['1']['final'] == pytest.approx(finals[1])
        assert arch['mean'] == pytest.approx(np.mean(finals))
        assert arch['std'] == pytest.approx(np.std(finals, ddof=1))
    widths = [a['structure'][-2]['out'] for a in report['archs']]
    width_rho = rank_correlation(widths, [a['mean'] for a in
                                          report['archs']])['spearman_rho']
    assert width_rho == pytest.approx(1.0)
    params = report['correlations']['params']
    assert params['spearman_rho'] == pytest.approx(rank_correlation(
        [a['proxies']['params'] for a in report['archs']],
        [a['mean'] for a in report['archs']])['spearman_rho'])
    # seed 1 = seed 0 + 0.01: the ceiling is a perfect rank agreement
    # wherever the widths differ
    assert report['seed_ceiling']['n'] == 4
    saved = json.load(open(osp.join(study.work_dir, 'rank_study.json')))
    assert set(saved) >= {'archs', 'correlations', 'seed_ceiling'}
    assert set(saved['correlations']) == {
        'stentr_score', 'stentr_score_norefine', 'flops', 'params',
        'layers', 'random_score'}
    for stats in saved['correlations'].values():
        assert set(stats) >= {'kendall_tau', 'kendall_tau_ci',
                              'spearman_rho', 'spearman_rho_ci', 'band'}
    rows = open(osp.join(study.work_dir, 'rank_study.csv')).read().split()
    assert len(rows) == 5 and rows[0].startswith('id,role,in_band,')
    assert osp.getsize(osp.join(study.work_dir, 'rank_study.png')) > 10000
    # nothing left to train
    assert fake_setup['study']('whole', resume=True).train() == []
    assert called(fake_setup) == []


def test_killed_study_resumes_without_retraining(fake_setup, monkeypatch):
    monkeypatch.setenv('CALLS', str(fake_setup['calls']))
    script = textwrap.dedent(f'''
        import os, sys
        sys.path.insert(0, {ROOT!r})
        from e3d_plugin.study import RankStudy
        study = RankStudy({SEARCH_XS!r}, {fake_setup['train']!r},
                          {str(fake_setup['tmp'] / 'killed')!r},
                          num_archs=4, seeds=2, num_candidates=2000,
                          train_command=[sys.executable,
                                         {fake_setup['trainer']!r}])
        study.prepare()
        study.train()
        ''')
    proc = subprocess.run([sys.executable, '-c', script],
                          env=dict(os.environ, KILL_STUDY_AT='a02_seed0'),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert called(fake_setup) == ['a00_seed0', 'a01_seed0', 'a02_seed0']
    results = fake_setup['tmp'] / 'killed' / 'results.jsonl'
    assert len(results.read_text().splitlines()) == 2
    with open(results, 'ab') as f:  # and a write the kill cut short
        f.write(b'{"arch": "a02", "seed": 0, "status": "do')
    study = fake_setup['study']('killed', resume=True)
    study.prepare()
    trained = study.train()
    assert called(fake_setup) == ['a02_seed0', 'a03_seed0'] + [
        f'a{i:02d}_seed1' for i in range(4)]
    records, notes = read_results(str(results))
    assert notes == [] and len(records) == 8
    done = finished_runs(records)
    assert {k: r['final'] for k, r in done.items()} == pytest.approx(
        expected_acc(study))
    assert len(trained) == 6
    # the report equals that of a study nobody stopped
    whole = fake_setup['study']('whole')
    whole.prepare()
    whole.train()
    called(fake_setup)
    assert json.dumps(study.report(write=False)['correlations']) == (
        json.dumps(whole.report(write=False)['correlations']))


def test_a_killed_run_is_recorded_and_retried_alone(fake_setup, monkeypatch):
    monkeypatch.setenv('CALLS', str(fake_setup['calls']))
    monkeypatch.setenv('KILL_RUN', 'a01_seed1')
    study = fake_setup['study']('run_killed')
    study.prepare()
    trained = study.train()
    assert len(trained) == 8 and len(called(fake_setup)) == 8
    failed = [r for r in trained if r['status'] != 'done']
    assert [(r['arch'], r['seed'], r['reason']) for r in failed] == [
        ('a01', 1, 'killed by signal 9 (SIGKILL)')]
    assert study.failed() == [('a01', 1, 'killed by signal 9 (SIGKILL)')]
    report = study.report(write=False)
    assert report['runs_done'] == 7
    assert report['seed_ceiling']['n'] == 3  # a01 lacks seed 1
    monkeypatch.delenv('KILL_RUN')
    again = fake_setup['study']('run_killed', resume=True)
    again.prepare()
    assert [(r['arch'], r['seed'], r['status']) for r in again.train()] == [
        ('a01', 1, 'done')]
    assert called(fake_setup) == ['a01_seed1'] and again.failed() == []


def test_gpus_run_one_training_per_device_at_once(fake_setup, monkeypatch):
    devices = fake_setup['tmp'] / 'devices.txt'
    monkeypatch.setenv('CALLS', str(fake_setup['calls']))
    monkeypatch.setenv('DEVICES', str(devices))
    study = fake_setup['study']('gpus', queue=dict(gpus=2))
    study.prepare()
    assert all(r['status'] == 'done' for r in study.train())
    rows = [line.split() for line in devices.read_text().splitlines()]
    assert sorted(row[0] for row in rows) == sorted(
        f'a{i:02d}_seed{s}' for s in (0, 1) for i in range(4))
    assert {row[1] for row in rows} == {'0', '1'}
    spans = [(float(row[2]), float(row[3]), row[1]) for row in rows]
    # never two runs on one device at once, and the two devices overlap
    for device in ('0', '1'):
        mine = sorted(span[:2] for span in spans if span[2] == device)
        assert all(a[1] <= b[0] for a, b in zip(mine, mine[1:]))
    assert any(a[0] < b[1] and b[0] < a[1] for a in spans for b in spans
               if a[2] != b[2])


def test_first_run_failing_stops_the_study(fake_setup, monkeypatch):
    monkeypatch.setenv('CALLS', str(fake_setup['calls']))
    monkeypatch.setenv('KILL_RUN', 'a00_seed0')
    study = fake_setup['study']('first_fails', queue=dict(jobs=1))
    study.prepare()
    with pytest.raises(StudyError, match=r'the first run failed \(killed '
                       r'by signal 9 \(SIGKILL\)\); see .*a00_seed0/'
                       r'train.log'):
        study.train()
    assert called(fake_setup) == ['a00_seed0']


def test_calibration_sample_seeds_and_last_epochs(fake_setup, monkeypatch):
    """A calibration: only band structures, neither the best nor the start,
    other training seeds; the ceiling compares those seeds, and
    --final-epochs averages the last validations."""
    monkeypatch.setenv('CALLS', str(fake_setup['calls']))
    study = fake_setup['study']('calibration', first_seed=100,
                                band_share=1.0, include_fixed=False)
    plan = study.prepare()
    assert all(a['in_band'] and a['role'] == 'band' for a in plan['archs'])
    assert plan['settings']['first_seed'] == 100
    assert plan['settings']['include_fixed'] is False
    default = fake_setup['study']('default')
    default_plan = default.prepare()
    assert 'first_seed' not in default_plan['settings']
    fixed = {tuple(map(str, a['structure'])) for a in default_plan['archs']
             if a['role'] in ('best', 'start')}
    assert len(fixed) == 2
    assert not fixed & {tuple(map(str, a['structure']))
                        for a in plan['archs']}
    study.train()
    assert sorted(set(run.split('_seed')[1] for run in called(fake_setup))) \
        == ['100', '101']
    report = study.report(write=False)
    assert report['seed_ceiling']['band']['n'] == 4
    widths = {a['id']: a['structure'][-2]['out'] for a in report['archs']}
    # the stand-in logs 0.1 then width / 1000 + seed / 100
    for arch in report['archs']:
        assert arch['acc']['100']['final'] == pytest.approx(
            widths[arch['id']] / 1000 + 1.0)
    again = fake_setup['study']('calibration', first_seed=100,
                                band_share=1.0, include_fixed=False,
                                final_epochs=2)
    averaged = again.report(write=False)
    for arch in averaged['archs']:
        assert arch['acc']['101']['final'] == pytest.approx(
            (0.1 + widths[arch['id']] / 1000 + 1.01) / 2)
    assert 'mean of the last 2 validations' in averaged['accuracy']
    # a calibration is another study: the settings must match to resume
    with pytest.raises(StudyError, match='holds a rank study with '
                       'band_share 1.0, not 0.5'):
        fake_setup['study']('calibration', resume=True).prepare()


@pytest.mark.parametrize('kwargs,message', [
    (dict(first_seed=-1), '--first-seed must be an integer in 0..2**31-1, '
     'got -1'),
    (dict(final_epochs=0), '--final-epochs must be an integer in '
     '1..2**31-1, got 0'),
    (dict(band_share=0), '--band-share must be a number in (0, 1], got 0'),
    (dict(band_share=1.5), '--band-share must be a number in (0, 1], got '
     '1.5'),
    (dict(include_fixed='no'), "include_fixed must be True or False, got "
     "'no'"),
])
def test_calibration_options_bad_values(fake_setup, kwargs, message):
    with pytest.raises(StudyError) as e:
        fake_setup['study']('bad', **kwargs)
    assert str(e.value) == message


# ----------------------------------------------------------------------
# network proxies: computed when asked, added to a finished study
def without_network_proxies(plan):
    """``plan`` with what adding network proxies writes taken out."""
    plan = json.loads(json.dumps(plan))
    plan.pop('proxy_settings', None)
    for arch in plan['archs']:
        arch.pop('proxy_ms', None)
        for name in NETWORK_PROXIES:
            arch['proxies'].pop(name, None)
    return plan


def test_report_only_adds_network_proxies(fake_setup, monkeypatch):
    from e3d_plugin.nas import NASWOTScore, SynFlowScore
    monkeypatch.setenv('CALLS', str(fake_setup['calls']))
    study = fake_setup['study']('whole')
    study.prepare()
    study.train()
    called(fake_setup)
    plan_path = osp.join(study.work_dir, 'study_plan.json')
    results_path = osp.join(study.work_dir, 'results.jsonl')
    plan_before = json.load(open(plan_path))
    results_before = open(results_path, 'rb').read()
    assert 'proxy_settings' not in plan_before
    assert all(set(a['proxies']) == set(PROXIES)
               for a in plan_before['archs'])

    again = fake_setup['study']('whole', proxies=['synflow', 'naswot'])
    again.prepare(report_only=True)
    report = again.report()
    assert called(fake_setup) == []  # nothing trained
    plan = json.load(open(plan_path))
    # the plan gains the proxies, their cost and settings, nothing else
    assert without_network_proxies(plan) == plan_before
    assert open(results_path, 'rb').read() == results_before
    assert plan['proxy_settings'] == {
        'synflow': dict(type='SynFlowScore', image_size=[64, 64], frames=8,
                        repeats=1, seed=0, num_classes=10),
        'naswot': dict(type='NASWOTScore', image_size=[64, 64], frames=8,
                       batch_size=8, repeats=1, seed=0)}
    synflow, naswot = SynFlowScore(64, 8), NASWOTScore(64, 8)
    for arch in plan['archs']:
        structure = Structure.from_dicts(arch['structure'])
        assert arch['proxies']['synflow'] == synflow(structure)
        assert arch['proxies']['naswot'] == naswot(structure)
        assert set(arch['proxy_ms']) == {'synflow', 'naswot'}
        assert all(ms > 0 for ms in arch['proxy_ms'].values())
    # reported like every proxy, in report order
    assert list(report['correlations']) == list(PROXIES) + [
        'naswot', 'synflow']
    means = [a['mean'] for a in report['archs']]
    for name in ('naswot', 'synflow'):
        values = [a['proxies'][name] for a in report['archs']]
        stats = report['correlations'][name]
        assert stats['kendall_tau'] == pytest.approx(rank_correlation(
            values, means)['kendall_tau'])
        assert set(stats['band']) >= {'kendall_tau', 'spearman_rho'}
        assert report['proxy_ms'][name] == pytest.approx(np.mean(
            [a['proxy_ms'][name] for a in plan['archs']]))
    saved = json.load(open(osp.join(study.work_dir, 'rank_study.json')))
    assert set(saved['correlations']) == set(PROXIES) | {'naswot',
                                                         'synflow'}
    header = open(osp.join(study.work_dir,
                           'rank_study.csv')).readline().strip()
    assert header.startswith('id,role,in_band,temporal_rf,' + ','.join(PROXIES) +
                             ',naswot,synflow,seed0_final')
    from e3d_plugin.study import format_table
    table = format_table(report)
    assert '\nNASWOT ' in table and '\nSynFlow ' in table
    assert 'cost per architecture: NASWOT ' in table
    # asked again: nothing to compute, the plan file stays as it is
    text = open(plan_path).read()
    third = fake_setup['study']('whole', proxies=['naswot', 'flops'])
    third.prepare(report_only=True)
    assert open(plan_path).read() == text
    # a new study asked for a network proxy computes it in its plan, with
    # the values a finished study gets
    new = fake_setup['study']('new', proxies=['naswot'])
    new.prepare()
    assert [a['proxies']['naswot'] for a in new.plan['archs']] == [
        a['proxies']['naswot'] for a in plan['archs']]
    assert 'synflow' not in new.plan['archs'][0]['proxies']


def test_tool_report_only_with_proxies(fake_setup, monkeypatch, capsys):
    monkeypatch.setenv('CALLS', str(fake_setup['calls']))
    study = fake_setup['study']('done')
    study.prepare()
    study.train()
    called(fake_setup)
    argv = [SEARCH_XS, '--train-config', fake_setup['train'], '--work-dir',
            study.work_dir, '--num-candidates', '2000', '--num-archs', '4',
            '--report-only']
    tool = load_tool('rank_study')
    plan_path = osp.join(study.work_dir, 'study_plan.json')
    before = open(plan_path).read()
    assert tool.main(argv + ['--proxies', 'grad_norm', 'nope']) == 2
    assert capsys.readouterr().err == (
        "error: --proxies: unknown proxy 'nope'; known: stentr_score, "
        'stentr_score_norefine, flops, params, layers, random_score, '
        'stentr_score_coverage, zen_score, naswot, synflow, grad_norm, zico\n')
    assert open(plan_path).read() == before
    assert tool.main(argv + ['--proxies', 'grad_norm']) == 0
    out = capsys.readouterr()
    assert 'proxy grad_norm: 4 architectures in ' in out.err
    assert '\ngrad-norm ' in out.out
    assert 'cost per architecture: grad-norm ' in out.out
    assert called(fake_setup) == []
    report = json.load(open(osp.join(study.work_dir, 'rank_study.json')))
    assert 'grad_norm' in report['correlations']
    # the study's report keeps the proxy once its plan has it
    later = fake_setup['study']('done')
    later.prepare(report_only=True)
    assert 'grad_norm' in later.report(write=False)['correlations']


# ----------------------------------------------------------------------
# the tool: bad inputs
def write(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def tool_inputs(fake_setup):
    tmp = fake_setup['tmp']
    x3d = write(tmp / 'x3d.py', f'''
        _base_ = [{fake_setup['train']!r}]
        model = dict(backbone=dict(_delete_=True, type='X3D'))
        ''')
    no_data = write(tmp / 'no_data.py', f'''
        _base_ = [{TRAIN_XS!r}]
        train_dataloader = dict(dataset=dict(ann_file='/no/such/list.txt'))
        ''')
    plan_dir = str(tmp / 'planned')
    fake_setup['study']('planned').prepare()  # a plan, nothing trained
    return dict(train=fake_setup['train'], x3d=x3d, no_data=no_data,
                planned=plan_dir, tmp=tmp)


BAD_INPUTS = [
    (dict(train='/no/such/train.py'),
     "error: --train-config: config file '/no/such/train.py' does not "
     'exist'),
    (dict(train='{no_data}'),
     "error: --train-config {no_data}: train_dataloader.dataset.ann_file: "
     "'/no/such/list.txt' does not exist"),
    (dict(train='{x3d}'),
     "error: --train-config {x3d}: model.backbone.type is 'X3D', not 'E3D'; "
     "the study replaces an E3D backbone's structure, so give a config "
     'with an E3D backbone'),
    (dict(extra=['--num-archs', '2']),
     'error: --num-archs must be an integer >= 3 (a rank correlation needs '
     'at least 3 architectures), got 2'),
    (dict(extra=['--seeds', '0']),
     'error: --seeds must be an integer >= 1, got 0'),
    (dict(extra=['--num-archs', '5', '--cfg-options'] + [
        f'{k}={v}'.replace(' ', '') for k, v in tiny_space_options().items()
    ]), 'error: --num-archs 5: the space gives only 4 distinct '
     "structures within the budgets {{'flops': 40000000.0, 'layers': 20}}; "
     'lower --num-archs or widen the space'),
    (dict(extra=['--cfg-options', 'search.budgets.flops=-1']),
     # the searcher words this one; the study names the config
     'error: {search}: *'),
    (dict(extra=['--cfg-options', 'search.budgets.flops']),
     "error: --cfg-options: 'search.budgets.flops' is not KEY=VALUE (e.g. "
     'train_cfg.max_epochs=5) (see --help)'),
    (dict(work_dir='{planned}', extra=['--num-archs', '5']),
     'error: work dir {planned} holds a rank study with num_archs 4, not 5; '
     'choose another --work-dir (or repeat its settings)'),
    (dict(work_dir='{planned}', extra=['--num-archs', '4']),
     'error: work dir {planned} already holds this rank study; pass '
     '--resume to continue it, --report-only to report it, or choose '
     'another --work-dir'),
    (dict(extra=['--resume']),
     'error: --resume: no rank study in {work} (no study_plan.json); run '
     'without it to start one'),
    (dict(extra=['--proxies', 'zen_score', 'zen']),
     "error: --proxies: unknown proxy 'zen'; known: stentr_score, "
     'stentr_score_norefine, flops, params, layers, random_score, '
     'stentr_score_coverage, zen_score, naswot, synflow, grad_norm, zico'),
    (dict(extra=['--gpus', '1']),
     'error: --gpus 1: this machine has 0 CUDA devices; lower --gpus (0 '
     'trains on the CPU)'),
    # the run queue's options
    (dict(extra=['--jobs', '0']), 'error: --jobs must be an integer >= 1, '
     'got 0'),
    (dict(extra=['--jobs', '5000']), 'error: --jobs 5000 is more than this '
     'queue starts (at most 1024)'),
    (dict(extra=['--threads', '-1']), 'error: --threads must be an integer '
     '>= 1, got -1'),
    (dict(extra=['--gpus', '-2']), 'error: --gpus must be an integer >= 0, '
     'got -2'),
    (dict(extra=['--gpus', '1', '--runs-per-gpu', '0']),
     'error: --runs-per-gpu must be an integer >= 1, got 0'),
    (dict(extra=['--runs-per-gpu', '2']), 'error: --runs-per-gpu goes with '
     '--gpus G (the runs on each of G GPUs)'),
    (dict(extra=['--gpus', '1', '--jobs', '2']), 'error: --jobs and --gpus: '
     'give one; with --gpus G the queue runs --runs-per-gpu runs on each GPU'),
    (dict(extra=['--launcher', 'foo']), 'error: --launcher must be one of '
     "local, slurm, got 'foo'"),
    (dict(extra=['--launcher', 'slurm']), 'error: --launcher slurm needs '
     '--partition NAME'),
    (dict(extra=['--partition', 'gpu']), 'error: --partition goes with '
     '--launcher slurm'),
    (dict(extra=['--launcher', 'slurm', '--partition', 'p',
                 '--cpus-per-task', '0']),
     'error: --cpus-per-task must be an integer >= 1, got 0'),
    (dict(extra=['--launcher', 'slurm', '--partition', 'p', '--gpus', '2']),
     'error: --gpus / --runs-per-gpu are for local GPUs; with --launcher '
     'slurm give --gpus-per-task and --jobs'),
]


@pytest.mark.parametrize('case,message', BAD_INPUTS)
def test_tool_bad_inputs_one_line_exit_2(case, message, tool_inputs,
                                         capsys):
    import torch
    if case.get('extra', [None])[:2] == ['--gpus', '1'] and len(
            case['extra']) == 2 and torch.cuda.is_available():
        pytest.skip('a CUDA machine has GPUs to run on')
    values = dict(tool_inputs, search=SEARCH_XS,
                  work=str(tool_inputs['tmp'] / 'work'))
    train = case.get('train', '{train}').format(**values)
    work_dir = case.get('work_dir', '{work}').format(**values)
    argv = [SEARCH_XS, '--train-config', train, '--work-dir', work_dir,
            '--num-candidates', '2000', '--num-archs', '4']
    argv += case.get('extra', [])
    try:
        code = load_tool('rank_study').main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    message = message.format(**values)
    if message.endswith('*'):  # the start of the line
        assert err.startswith(message[:-1]) and err.count('\n') == 1
        assert err.endswith('got -1\n')
    else:
        assert err == message + '\n'
    assert not osp.exists(values['work']) or os.listdir(values['work']) == []


# ----------------------------------------------------------------------
# end to end, real training
@pytest.mark.slow
def test_tool_trains_a_small_study_and_resumes(tmp_path, capsys):
    import torch
    data = str(tmp_path / 'data')
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'data',
                                  'synthetic_motion.py'), '--out', data,
         '--num-videos', '40', '--size', '32', '--frames', '16'],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    train = write(tmp_path / 'train.py', f'''
        _base_ = [{TRAIN_XS!r}]
        data_root = {data!r}
        _loader = dict(batch_size=8, num_workers=0, persistent_workers=False)
        train_dataloader = dict(**_loader, dataset=dict(
            ann_file=data_root + '/train_list.txt',
            data_prefix=dict(video=data_root + '/videos')))
        val_dataloader = dict(**_loader, dataset=dict(
            ann_file=data_root + '/val_list.txt',
            data_prefix=dict(video=data_root + '/videos')))
        test_dataloader = val_dataloader
        ''')
    work_dir = str(tmp_path / 'study')
    argv = [SEARCH_XS, '--train-config', train, '--work-dir', work_dir,
            '--num-archs', '3', '--seeds', '2', '--num-candidates', '2000',
            '--keep-checkpoints', '--train-cfg-options',
            'train_cfg.max_epochs=1']
    tool = load_tool('rank_study')
    assert tool.main(argv) == 0
    out = capsys.readouterr()
    assert 'seed-noise ceiling' in out.out and 'STEntr-Score' in out.out
    assert '[6/6] a02 seed 1: acc/top1 ' in out.err
    report = json.load(open(osp.join(work_dir, 'rank_study.json')))
    assert len(report['archs']) == 3 and report['runs_done'] == 6
    for arch in report['archs']:
        assert sorted(arch['acc']) == ['0', '1']
        for seed in (0, 1):
            run_dir = osp.join(work_dir, 'runs', f"{arch['id']}_seed{seed}")
            values, epochs = read_accuracy(run_dir)
            assert epochs == [1]
            assert arch['acc'][str(seed)] == dict(final=values[-1],
                                                  best=max(values))
            assert 0 <= values[-1] <= 1
            structure = Structure.from_dicts(arch['structure'])
            assert load_structure(osp.join(run_dir,
                                           'structure.json')) == structure
            weights = torch.load(osp.join(run_dir, 'epoch_1.pth'),
                                 map_location='cpu', weights_only=False)
            assert weights['state_dict']['cls_head.fc_cls.weight'].shape == (
                10, structure.out_channels)
    lines = open(osp.join(work_dir, 'results.jsonl')).read().splitlines()
    assert len(lines) == 6
    # resuming a finished study trains nothing and reports the same
    assert tool.main(argv + ['--resume']) == 0
    again = capsys.readouterr()
    assert 'resuming: 6/6 runs finished, 0 to train' in again.err
    assert again.out == out.out
    assert open(osp.join(work_dir,
                         'results.jsonl')).read().splitlines() == lines


def test_report_without_motion_blind_structures():
    from e3d_plugin.study.report import format_table, make_report
    from e3d_plugin.structure import get_preset
    xs = get_preset('E3D-XS').to_dicts()
    blind = [dict(b, kt=1) for b in xs]
    rng = random.Random(3)
    archs, records = [], []
    # a00, a01: motion-blind (at chance); the others see motion
    for index in range(8):
        structure = blind if index < 2 else xs
        arch_id = f'a{index:02d}'
        archs.append(dict(
            id=arch_id, role='band', in_band=index % 4 != 3,
            structure=structure,
            proxies={p: rng.random() for p in PROXIES}))
        for seed in (0, 1):
            acc = 0.05 if index < 2 else 0.3 + 0.08 * index + 0.05 * (
                rng.random() - 0.5)
            records.append(dict(arch=arch_id, seed=seed, status='done',
                                final=acc, best=acc, curve=[acc]))
    plan = dict(settings=dict(seeds=2, metric='acc/top1'), budgets={},
                image_size=[40, 40], frames=8, band_flops=1.0, archs=archs,
                notes=[])
    report = make_report(plan, records, n_resamples=200)
    rf = {a['id']: a['temporal_rf'] for a in report['archs']}
    assert rf['a00'] == rf['a01'] == 1 and rf['a02'] == 11
    seeing = [a for a in report['archs'] if a['temporal_rf'] > 1]
    for name, stats in report['correlations'].items():
        x = [a['proxies'][name] for a in seeing]
        y = [a['mean'] for a in seeing]
        expected = rank_correlation(x, y, n_resamples=200)
        assert stats['seeing']['kendall_tau'] == pytest.approx(
            expected['kendall_tau'])
        band = [a for a in seeing if a['in_band']]
        expected = rank_correlation([a['proxies'][name] for a in band],
                                    [a['mean'] for a in band],
                                    n_resamples=200)
        assert stats['band_seeing']['kendall_tau'] == pytest.approx(
            expected['kendall_tau'])
    ceiling = report['seed_ceiling']
    expected = rank_correlation([a['acc']['0']['final'] for a in seeing],
                                [a['acc']['1']['final'] for a in seeing],
                                n_resamples=200)
    assert ceiling['seeing']['kendall_tau'] == pytest.approx(
        expected['kendall_tau'])
    table = format_table(report)
    assert ('without the 2 motion-blind structures (temporal receptive '
            'field 1 frame): 6 architectures, 4 in the band') in table
    # no motion-blind structure: no such groups
    plan['archs'] = [a for a in archs if a['id'] not in ('a00', 'a01')]
    report = make_report(plan, records, n_resamples=200)
    assert 'seeing' not in report['seed_ceiling']
    assert 'motion-blind' not in format_table(report)


def test_report_only_adds_the_coverage_proxy(fake_setup, monkeypatch):
    from e3d_plugin.nas import STEntrScore
    monkeypatch.setenv('CALLS', str(fake_setup['calls']))
    study = fake_setup['study']('whole')
    study.prepare()
    study.train()
    called(fake_setup)
    plan_path = osp.join(study.work_dir, 'study_plan.json')
    before = json.load(open(plan_path))
    again = fake_setup['study']('whole', proxies=['stentr_score_coverage'])
    again.prepare(report_only=True)
    report = again.report()
    assert called(fake_setup) == []
    plan = json.load(open(plan_path))
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'search_e3d_xs.py'))
    score = STEntrScore(**dict(
        {k: v for k, v in cfg.score.items() if k != 'type'},
        temporal_coverage=True))
    for arch, old in zip(plan['archs'], before['archs']):
        value = arch['proxies'].pop('stentr_score_coverage')
        assert value == pytest.approx(
            score(Structure.from_dicts(arch['structure'])), rel=1e-12)
        assert arch == old  # nothing else changed
    assert 'stentr_score_coverage' in report['correlations']


def test_results_file_keeps_what_is_not_a_half_written_record(tmp_path):
    path = tmp_path / 'results.jsonl'
    # a whole last record without its newline (e.g. edited by hand)
    whole = (json.dumps(dict(arch='a00', seed=0, status='done', final=0.5,
                             best=0.6)) + '\n' +
             json.dumps(dict(arch='a01', seed=0, status='done', final=0.4,
                             best=0.4)))
    path.write_text(whole)
    records, notes = read_results(str(path))
    assert [r['arch'] for r in records] == ['a00', 'a01'] and notes == []
    assert path.read_text() == whole + '\n'  # only the newline added
    append_result(str(path), dict(arch='a02', seed=0, status='failed'))
    assert [r['arch'] for r in read_results(str(path))[0]] == [
        'a00', 'a01', 'a02']
    # a damaged file (no record at all) is never emptied
    damaged = b'\x00\xffnot json at all'
    path.write_bytes(damaged)
    records, notes = read_results(str(path))
    assert records == [] and len(notes) == 1
    assert 'not a JSON record, skipped' in notes[0]
    assert path.read_bytes() == damaged + b'\n'
    # without repair nothing is written
    path.write_bytes(damaged)
    read_results(str(path), repair=False)
    assert path.read_bytes() == damaged
