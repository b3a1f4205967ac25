"""Search-outcome trials (e3d_plugin/study/trials.py, tools/search_trials.py):
the plan and the searches at a tiny candidate count, the random draw, X3D's
FLOPs, the permutation p-value against a direct computation, the report from
fake results, resume after kills during the searches and during the runs,
refusal of changed settings, and the tool's one-line errors."""
import itertools
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from mmengine.config import Config

from e3d_plugin.cost import compute_cost
from e3d_plugin.nas import build_search
from e3d_plugin.structure import Structure, load_structure
from e3d_plugin.study import StudyError, read_results
from e3d_plugin.study.trials import (SCORES, SearchTrials, backbone_cost,
                                     check_scores, draw_in_band,
                                     format_trials_markdown,
                                     format_trials_table,
                                     make_trials_report, permutation_pvalue,
                                     run_owner, score_config,
                                     write_x3d_config)
from e3d_plugin.units import temporal_receptive_field
from tests.helpers import ROOT, load_tool, stand_in_train_config

SEARCH = osp.join(ROOT, 'configs', 'search_e3d_xs_motion-hard.py')
TRAIN = osp.join(ROOT, 'configs', 'e3d', 'e3d_xs_8x4x1_motion-hard.py')
X3D_CONFIG = osp.join(ROOT, 'configs', 'compare',
                      'x3d_8x4x1_motion-hard.py')
BUDGETS = dict(flops=1.72e7, layers=20)  # the search config's
#: What the tests search with: fast scores and one network score.
TEST_SCORES = ['stentr', 'flops', 'random', 'naswot']
CANDIDATES = 20

#: A stand-in trainer: records its call, writes mmengine scalars whose
#: final accuracy is the structure's last block width / 1000 + seed / 100
#: (X3D, without a structure file: 0.1 + seed / 100); kills the trials
#: process at the run named by KILL_TRIALS_AT. Calls go to the file
#: ``calls``.
FAKE_TRAINER = '''
import json, os, signal, sys
config, run_dir = sys.argv[1], sys.argv[3]
name = os.path.basename(run_dir)
with open({calls!r}, 'a') as f:
    f.write(name + '\\n')
if name == os.environ.get('KILL_TRIALS_AT'):
    os.kill(os.getppid(), signal.SIGKILL)  # the trials die mid-run
    sys.exit(0)
seed = int(open(config).read().split('seed=')[1].split(')')[0])
path = os.path.join(run_dir, 'structure.json')
width = (json.load(open(path))['blocks'][-2]['out'] if os.path.exists(path)
         else 100)
out = os.path.join(run_dir, '20990101_000000', 'vis_data')
os.makedirs(out)
with open(os.path.join(out, 'scalars.json'), 'w') as f:
    for epoch, acc in ((1, 0.1), (2, 0.05), (3, width / 1000 + seed / 100)):
        f.write(json.dumps({'acc/top1': acc, 'step': epoch}) + '\\n')
'''


def fake_accuracy(structure, seed):
    """The stand-in trainer's final accuracy of a plan structure."""
    if structure is None:
        return 0.1 + seed / 100
    return structure[-2]['out'] / 1000 + seed / 100


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A training config with (empty) data on disk, the stand-in trainer,
    a factory of trials and of tool command lines, and one finished
    reference trials run (the test scores, 2 seeds, X3D)."""
    tmp = tmp_path_factory.mktemp('trials')
    train = stand_in_train_config(tmp, TRAIN)
    calls = tmp / 'calls.txt'
    trainer = tmp / 'fake_train.py'
    trainer.write_text(FAKE_TRAINER.replace('{calls!r}', repr(str(calls))))

    def trials(work_dir, **kwargs):
        options = dict(scores=TEST_SCORES, num_candidates=CANDIDATES,
                       seeds=2, x3d_config=None,
                       train_command=[sys.executable, str(trainer)],
                       stream=open(os.devnull, 'w'))
        options.update(kwargs)
        return SearchTrials(options.pop('search_config', SEARCH),
                            options.pop('train_config', train),
                            str(tmp / work_dir), **options)

    def argv(work_dir, *extra, scores=TEST_SCORES):
        return ([SEARCH, '--train-config', train, '--work-dir',
                 str(tmp / work_dir), '--num-candidates', str(CANDIDATES),
                 '--seeds', '2', '--no-progress', '--scores', *scores]
                + list(extra))

    setup = dict(tmp=tmp, train=train, trainer=str(trainer), calls=calls,
                 trials=trials, argv=argv)
    reference = trials('reference', x3d_config=X3D_CONFIG,
                       final_epochs=2)
    reference.prepare()
    reference.search()
    reference.train()
    setup.update(reference=reference, reference_calls=called(setup),
                 reference_report=reference.report())
    return setup


def called(setup):
    path = setup['calls']
    runs = path.read_text().split() if path.exists() else []
    path.write_text('')
    return runs


def search_cfg(**options):
    cfg = Config.fromfile(SEARCH)
    cfg.merge_from_dict(options)
    return cfg


# ----------------------------------------------------------------------
# the plan and the searches
def test_plan_records_settings_and_every_search(setup):
    plan = setup['reference'].plan
    settings = plan['settings']
    assert settings['scores'] == TEST_SCORES
    assert settings['num_candidates'] == CANDIDATES
    assert settings['search_seed'] == 0 and settings['band'] == 0.8
    assert settings['seeds'] == 2 and settings['first_seed'] == 0
    assert settings['search_config'] == SEARCH
    assert settings['x3d_config'] == X3D_CONFIG
    for key in ('search_config_sha256', 'train_config_sha256',
                'x3d_config_sha256'):
        assert len(settings[key]) == 64
    assert plan['budgets'] == BUDGETS
    assert plan['image_size'] == [40, 40] and plan['frames'] == 8
    assert plan['band_flops'] == pytest.approx(0.8 * BUDGETS['flops'])
    on_disk = json.load(open(setup['reference'].plan_path))
    assert on_disk == plan
    assert list(plan['searches']) == TEST_SCORES
    stentr = setup['reference']._stentr()
    for name, entry in plan['searches'].items():
        structure = Structure.from_dicts(entry['structure'])
        cost = compute_cost(structure, 40, 8)
        flops, layers = cost.flops, cost.layers
        assert entry['cost'] == cost._asdict()
        assert flops <= BUDGETS['flops'] and layers <= BUDGETS['layers']
        assert entry['stentr_score'] == pytest.approx(stentr(structure))
        assert entry['temporal_rf'] == temporal_receptive_field(structure)
        assert entry['temporal_rf'] >= 2  # min_temporal_rf of the config
        assert entry['search_s'] >= 0 and entry['resumed'] is False
        saved = load_structure(osp.join(setup['reference'].search_dir(name),
                                        'best_structure.json'))
        assert saved == structure
    searches = plan['searches']
    assert searches['stentr']['best_score'] == pytest.approx(
        searches['stentr']['stentr_score'])
    assert searches['flops']['best_score'] == searches['flops']['cost'][
        'flops']
    assert searches['naswot']['score']['type'] == 'NASWOTScore'
    assert searches['naswot']['score']['seed'] == 0
    assert searches['naswot']['score_calls'] > 0
    assert searches['naswot']['score_ms'] > 0
    assert 'score_calls' not in searches['stentr']
    # X3D: FlopAnalyzer at the search clip (configs/compare documents it)
    assert plan['x3d']['flops'] == 17013760
    assert plan['x3d']['params'] == 255376
    assert plan['x3d']['backbone'] == dict(type='X3D', gamma_w=0.5,
                                           gamma_b=2.0, gamma_d=0.5)
    assert plan['x3d']['in_channels'] == 256


@pytest.mark.parametrize('name', ['stentr', 'flops'])
def test_each_search_is_the_config_search_with_its_score(setup, name):
    cfg = search_cfg()
    cfg.score = score_config(name, cfg.score.to_dict())
    result = build_search(cfg, num_candidates=CANDIDATES,
                          progress=False).searcher.run()
    entry = setup['reference'].plan['searches'][name]
    assert Structure.from_dicts(entry['structure']) == result[
        'best_structure']
    assert entry['best_score'] == pytest.approx(result['best_score'])


def test_score_configs_keep_the_config_arguments():
    base = dict(type='STEntrScore', image_size=40, frames=8,
                stage_weights=(0, 0, 0, 1))
    assert score_config('stentr_norefine', base) == dict(
        type='STEntrScore', image_size=40, frames=8,
        stage_weights=(0, 0, 0, 1), refine=False, temporal_coverage=False)
    assert score_config('stentr_coverage', base)['temporal_coverage']
    assert score_config('zico', base, search_seed=7) == dict(
        type='ZiCoScore', image_size=40, frames=8,
        stage_weights=(0, 0, 0, 1), seed=7)
    assert score_config('random', base)['type'] == 'FlopsScore'
    assert check_scores(None) == tuple(SCORES)
    assert check_scores(['flops', 'stentr', 'flops']) == ('flops',
                                                          'stentr')


def test_random_is_the_first_draw_in_the_band(setup):
    import random
    built = build_search(search_cfg(), progress=False)
    entry = setup['reference'].plan['searches']['random']
    rng = random.Random(0)
    for draw in range(1, CANDIDATES + 1):
        structure = built.space.sample(built.init_structure, rng)
        flops, params, layers = compute_cost(structure, 40, 8)
        if flops >= 0.8 * 1.72e7 and flops <= 1.72e7 and layers <= 20:
            break
    assert entry['draw'] == draw
    assert Structure.from_dicts(entry['structure']) == structure
    # a memory budget of the search bounds the draw too
    limit = compute_cost(structure, 40, 8).max_feature - 1
    found = draw_in_band(built.space, built.init_structure,
                         dict(built.budgets, max_feature=limit), 40, 8, 0.8,
                         0, 1000)
    assert found['draw'] > draw
    assert found['cost']['max_feature'] <= limit
    assert found['cost']['flops'] >= 0.8 * 1.72e7
    with pytest.raises(StudyError, match=r'^random: none of 3 draws is '
                       r'within the budgets with FLOPs >= 1\.72e\+07 \(1 x '
                       r'the FLOPs budget\); lower --band'):
        draw_in_band(built.space, built.init_structure, built.budgets, 40,
                     8, 1.0, 0, 3)


def test_runs_are_every_structure_and_x3d_with_every_seed(setup):
    runs = setup['reference_calls']
    plan = setup['reference'].plan
    owners = [name for name in TEST_SCORES if run_owner(plan, name) == name]
    assert sorted(runs) == sorted(f'{name}_seed{seed}' for seed in (0, 1)
                                  for name in owners + ['x3d'])
    # seed by seed, X3D last in each
    assert runs[len(owners)] == 'x3d_seed0' and runs[-1] == 'x3d_seed1'
    records, notes = read_results(
        osp.join(setup['reference'].work_dir, 'results.jsonl'))
    assert notes == [] and {r['status'] for r in records} == {'done'}
    x3d = Config.fromfile(osp.join(setup['reference'].work_dir, 'runs',
                                   'x3d_seed1', 'config.py'))
    assert x3d.model.backbone == dict(type='X3D', gamma_w=0.5, gamma_b=2.0,
                                      gamma_d=0.5)
    assert x3d.model.cls_head.in_channels == 256
    assert x3d.randomness.seed == 1
    assert x3d.train_cfg.max_epochs == 8  # the training config's schedule


def test_report_of_the_trials(setup):
    report = setup['reference_report']
    plan = setup['reference'].plan
    rows = {row['name']: row for row in report['rows']}
    assert list(rows) == TEST_SCORES + ['x3d']
    assert report['runs_done'] == report['num_runs']
    for name, row in rows.items():
        structure = (None if name == 'x3d' else
                     plan['searches'][name]['structure'])
        # final_epochs=2: the mean of the last two validations
        values = [(0.05 + fake_accuracy(structure, seed)) / 2
                  for seed in (0, 1)]
        assert row['n'] == 2
        assert row['mean'] == pytest.approx(np.mean(values))
        assert row['std'] == pytest.approx(np.std(values, ddof=1))
        if name == 'flops':
            assert row['versus'] is None
        else:
            base = [(0.05 + fake_accuracy(plan['searches']['flops'][
                'structure'], seed)) / 2 for seed in (0, 1)]
            expected = permutation_pvalue(values, base)
            assert row['versus']['p'] == pytest.approx(expected['p'])
            assert row['versus']['diff'] == pytest.approx(
                np.mean(values) - np.mean(base))
    assert rows['x3d']['cost']['flops'] == 17013760
    assert rows['naswot']['score_ms'] == pytest.approx(
        plan['searches']['naswot']['score_ms'] /
        plan['searches']['naswot']['score_calls'])
    work_dir = setup['reference'].work_dir
    saved = json.load(open(osp.join(work_dir, 'trials.json')))
    assert [row['name'] for row in saved['rows']] == list(rows)
    markdown = open(osp.join(work_dir, 'trials.md')).read()
    assert markdown == format_trials_markdown(report)
    assert '| X3D (equal FLOPs) | 17.01 | 0.255 | - | - | - | - |' in markdown
    table = format_trials_table(report)
    assert table.splitlines()[0].startswith(
        'search-outcome trials: mean of the last 2 validations: acc/top1')


# ----------------------------------------------------------------------
# statistics and the report from fake results
def direct_pvalue(a, b):
    """Two-sided exact permutation p-value, every split enumerated:
    twice the smaller tail, at most 1 (scipy's definition)."""
    pooled = list(a) + list(b)
    observed = np.mean(a) - np.mean(b)
    stats = []
    for chosen in itertools.combinations(range(len(pooled)), len(a)):
        x = [pooled[i] for i in chosen]
        y = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        stats.append(np.mean(x) - np.mean(y))
    stats = np.array(stats)
    eps = 1e-12
    greater = np.mean(stats >= observed - eps)
    less = np.mean(stats <= observed + eps)
    return min(1.0, 2 * min(greater, less))


@pytest.mark.parametrize('a,b', [
    ([0.71, 0.75, 0.80, 0.78], [0.60, 0.65, 0.62, 0.70]),
    ([0.71, 0.75, 0.80, 0.78], [0.72, 0.74, 0.79, 0.77]),
    ([0.5, 0.9, 0.7], [0.6, 0.65, 0.62, 0.70, 0.61]),
    ([0.3, 0.3, 0.3], [0.3, 0.3, 0.3]),
])
def test_permutation_pvalue_against_direct_enumeration(a, b):
    result = permutation_pvalue(a, b)
    assert result['exact'] is True
    assert result['p'] == pytest.approx(direct_pvalue(a, b))
    assert result['diff'] == pytest.approx(np.mean(a) - np.mean(b))
    assert result['splits'] == len(list(itertools.combinations(
        range(len(a) + len(b)), len(a))))


def test_permutation_pvalue_sampled_and_degenerate():
    a = [0.71, 0.75, 0.80, 0.78, 0.74]
    b = [0.60, 0.65, 0.62, 0.70, 0.73]
    # 252 splits: 100 resamples draw them at random, seeded
    first = permutation_pvalue(a, b, n_resamples=100, seed=0)
    assert first['exact'] is False and first['splits'] == 100
    assert permutation_pvalue(a, b, n_resamples=100, seed=0) == first
    assert abs(first['p'] - direct_pvalue(a, b)) < 0.05
    # the observed difference is the largest: the smallest p of 252
    assert permutation_pvalue(a, b)['p'] == pytest.approx(
        direct_pvalue(a, b))
    one = permutation_pvalue([0.5], [0.6, 0.7])
    assert one['p'] is None and one['diff'] == pytest.approx(-0.15)
    assert one['note'] == ('1 and 2 values; a permutation test needs at '
                           'least 2 in each group')


def fake_plan():
    structure_a = load_structure('E3D-XS').to_dicts()
    structure_b = [dict(block) for block in structure_a]
    structure_b[-2] = dict(structure_b[-2], out=structure_b[-2]['out'] + 8)
    entry = dict(cost=dict(flops=16e6, params=1e5, layers=20),
                 stentr_score=40.0, temporal_rf=9, search_s=2.5)
    return dict(
        settings=dict(scores=['stentr', 'flops', 'params', 'zico'],
                      seeds=3, first_seed=10, search_seed=0,
                      num_candidates=100, metric='acc/top1'),
        budgets=BUDGETS, image_size=[40, 40], frames=8,
        band_flops=0.8 * 1.72e7,
        x3d=dict(flops=17013760, params=255376),
        searches=dict(
            stentr=dict(entry, structure=structure_a),
            flops=dict(entry, structure=structure_b),
            params=dict(entry, structure=structure_a, search_s=1.0)))


def record(score, seed, curve, status='done'):
    return dict(score=score, seed=seed, status=status, final=curve[-1],
                best=max(curve), curve=curve)


def test_report_from_fake_results():
    plan = fake_plan()
    records = [
        record('stentr', 10, [0.1, 0.70]), record('stentr', 11, [0.2, 0.74]),
        record('stentr', 12, [0.3, 0.78]),
        record('flops', 10, [0.1, 0.60]), record('flops', 11, [0.1, 0.66]),
        record('flops', 12, [0.4, 0.62]),
        record('x3d', 10, [0.5, 0.55]), record('x3d', 11, [0.5, 0.57]),
        dict(score='x3d', seed=12, status='failed', reason='exit code 1'),
        record('stentr', 13, [0.9]),  # not a seed of the trials
    ]
    report = make_trials_report(plan, records)
    rows = {row['name']: row for row in report['rows']}
    assert list(rows) == ['stentr', 'flops', 'params', 'zico', 'x3d']
    assert rows['stentr']['acc'] == {'10': 0.70, '11': 0.74, '12': 0.78}
    assert rows['stentr']['mean'] == pytest.approx(0.74)
    assert rows['stentr']['std'] == pytest.approx(0.04)
    assert rows['stentr']['versus']['p'] == pytest.approx(direct_pvalue(
        [0.70, 0.74, 0.78], [0.60, 0.66, 0.62]))
    assert rows['stentr']['versus']['diff'] == pytest.approx(
        0.74 - np.mean([0.60, 0.66, 0.62]))
    # params found the stentr structure: it shares its runs
    assert run_owner(plan, 'params') == 'stentr'
    assert rows['params']['runs_of'] == 'stentr'
    assert rows['params']['acc'] == rows['stentr']['acc']
    assert rows['params']['search_s'] == 1.0
    assert rows['zico']['searched'] is False and rows['zico']['n'] == 0
    assert rows['zico']['versus'] is None and rows['zico']['mean'] is None
    assert rows['x3d']['n'] == 2 and rows['x3d']['cost']['flops'] == 17013760
    assert rows['x3d']['versus']['p'] == pytest.approx(direct_pvalue(
        [0.55, 0.57], [0.60, 0.66, 0.62]))
    # stentr (params shares it), flops, zico (to search), X3D
    assert report['num_runs'] == 12 and report['runs_done'] == 8
    assert report['notes'] == [
        'params found the structure of STEntr-Score: it shares its runs',
        'ZiCo: search not finished']
    # the mean of the last two validations
    later = make_trials_report(plan, records, final_epochs=2)
    assert {row['name']: row['mean'] for row in later['rows']}[
        'flops'] == pytest.approx(np.mean([0.35, 0.38, 0.51]))
    table = format_trials_table(report)
    line = next(row for row in table.splitlines() if row.startswith('FLOPs'))
    assert line.split() == ['FLOPs', '16.00', '0.100', '20', '9', '40.00',
                            '2.5', '62.7', '±', '3.1', '3', '-', '-']
    line = next(row for row in table.splitlines() if row.startswith('ZiCo'))
    assert line.split() == ['ZiCo'] + ['-'] * 7 + ['0', '-', '-']
    markdown = format_trials_markdown(report)
    assert '| STEntr-Score | 16.00 | 0.100 | 20 | 9 | 40.00 | 2.5 | 74.0 ± ' \
        '4.0 | 3 | +11.3 |' in markdown
    assert '| X3D (equal FLOPs) | 55.0 | 57.0 | - |' in markdown


# ----------------------------------------------------------------------
# X3D
def test_x3d_cost_and_run_config(tmp_path):
    cost = backbone_cost(dict(type='X3D', gamma_w=0.5, gamma_b=2.0,
                              gamma_d=0.5), 8, [40, 40])
    assert cost == dict(flops=17013760, params=255376)
    path = write_x3d_config(str(tmp_path / 'x3d.py'), TRAIN,
                            dict(type='X3D', gamma_w=0.5), 432, 3)
    cfg = Config.fromfile(path)
    assert cfg.model.backbone == dict(type='X3D', gamma_w=0.5)
    assert cfg.model.cls_head.in_channels == 432
    assert cfg.randomness.seed == 3


# ----------------------------------------------------------------------
# resume, kills, changed settings
KILLED_SEARCH = '''
import os, signal, sys
sys.path.insert(0, {root!r})
from e3d_plugin.nas import EntropyEvolution
original = EntropyEvolution.checkpoint
done = []

def checkpoint(self, state, elapsed_s):
    original(self, state, elapsed_s)
    if os.environ.get('KILL_SEARCH') and \\
            os.path.basename(self.work_dir) == 'naswot':
        done.append(state.done)
        if len(done) == 5:
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-search

EntropyEvolution.checkpoint = checkpoint
sys.path.insert(0, os.path.join({root!r}, 'tools'))
import search_trials
sys.exit(search_trials.main({argv!r}, train_command=[sys.executable,
                                                      {trainer!r}]))
'''


def run_tool_process(setup, argv, **env):
    script = KILLED_SEARCH.format(root=ROOT, argv=argv,
                                  trainer=setup['trainer'])
    return subprocess.run([sys.executable, '-c', script],
                          env=dict(os.environ, **env), capture_output=True,
                          text=True, timeout=600)


class Killed(Exception):
    """Stands for the trials process being killed."""


def test_stopped_searches_and_runs_resume(setup, monkeypatch):
    """Stopped in the NASWOT search (after its fifth checkpoint), then in
    the runs (after the third run's record): each resume goes on where the
    stop left, and the result is the reference's (in this process; the
    same with real kills: the slow test below)."""
    from e3d_plugin.nas import EntropyEvolution
    from e3d_plugin.study import RunQueue
    original = EntropyEvolution.checkpoint

    def checkpoint(self, state, elapsed_s):
        original(self, state, elapsed_s)
        if osp.basename(self.work_dir) == 'naswot' and state.done == 5:
            raise Killed()

    monkeypatch.setattr(EntropyEvolution, 'checkpoint', checkpoint)
    trials = setup['trials']('stopped', queue=dict(jobs=1))
    with pytest.raises(Killed):
        trials.train()
    assert list(trials.plan['searches']) == ['stentr', 'flops', 'random']
    monkeypatch.setattr(EntropyEvolution, 'checkpoint', original)
    searched = []
    run = EntropyEvolution.run

    def record_run(self, resume=False):
        searched.append((osp.basename(self.work_dir), resume))
        return run(self, resume=resume)

    monkeypatch.setattr(EntropyEvolution, 'run', record_run)
    record = RunQueue._record

    def record_then_stop(self, *args):
        result = record(self, *args)
        if len(read_results(self.results_path)[0]) == 3:
            raise Killed()
        return result

    monkeypatch.setattr(RunQueue, '_record', record_then_stop)
    trials = setup['trials']('stopped', resume=True, queue=dict(jobs=1))
    with pytest.raises(Killed):
        trials.train()
    assert searched == [('naswot', True)]
    assert trials.plan['searches']['naswot']['resumed'] is True
    reference = setup['reference'].plan['searches']
    for name in TEST_SCORES:
        assert trials.plan['searches'][name]['structure'] == reference[
            name]['structure'], name
    first = called(setup)
    assert len(first) == 3
    monkeypatch.setattr(RunQueue, '_record', record)
    trials = setup['trials']('stopped', resume=True, queue=dict(jobs=1),
                             final_epochs=2)
    trials.train()
    assert searched == [('naswot', True)]  # no search again
    rest = called(setup)
    owners = [name for name in TEST_SCORES
              if run_owner(trials.plan, name) == name]
    assert sorted(first + rest) == sorted(
        f'{name}_seed{seed}' for name in owners for seed in (0, 1))
    report = trials.report(write=False)
    expected = {row['name']: row['acc'] for row in
                setup['reference_report']['rows'] if row['name'] != 'x3d'}
    assert {row['name']: row['acc'] for row in report['rows']} == expected


@pytest.mark.slow
def test_kill_during_searches_and_runs_resumes(setup, monkeypatch):
    """Killed (SIGKILL) in the NASWOT search, then killed again in the
    runs; each rerun with --resume goes on where the kill left: the
    searches and runs that finished are not done again, and the result is
    the reference's."""
    from e3d_plugin.nas import EntropyEvolution
    argv = setup['argv']('killed', '--no-x3d', '--final-epochs', '2',
                         '--jobs', '1')
    proc = run_tool_process(setup, argv, KILL_SEARCH='1')
    assert proc.returncode == -9, proc.stderr[-2000:]
    work_dir = setup['tmp'] / 'killed'
    plan = json.load(open(work_dir / 'trials_plan.json'))
    assert list(plan['searches']) == ['stentr', 'flops', 'random']
    checkpoint = json.load(open(work_dir / 'searches' / 'naswot' /
                                'search_checkpoint.json'))
    assert checkpoint['payload']['state']['done'] == 5
    assert called(setup) == []
    # a rerun without --resume is refused
    code = load_tool('search_trials').main(
        argv, train_command=[sys.executable, setup['trainer']])
    assert code == 2
    # resumed: only NASWOT searches (from its checkpoint), killed in a run
    proc = run_tool_process(setup, argv + ['--resume'],
                            KILL_TRIALS_AT='stentr_seed1')
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert 'search naswot: resuming' in proc.stderr
    assert 'search stentr' not in proc.stderr
    plan = json.load(open(work_dir / 'trials_plan.json'))
    reference = setup['reference'].plan
    assert plan['searches']['naswot']['resumed'] is True
    for name in TEST_SCORES:
        assert plan['searches'][name]['structure'] == reference['searches'][
            name]['structure'], name
    assert called(setup)[-1] == 'stentr_seed1'
    # resumed again, in this process: no search runs, the other runs train
    runs = []
    monkeypatch.setattr(EntropyEvolution, 'run',
                        lambda self, resume=False: runs.append(self))
    trials = setup['trials']('killed', resume=True, final_epochs=2,
                             queue=dict(jobs=1))
    trials.prepare()
    trials.train()
    assert runs == []
    trained = called(setup)
    assert 'stentr_seed0' not in trained and trained[0] == 'stentr_seed1'
    report = trials.report()
    expected = {row['name']: row['acc'] for row in
                setup['reference_report']['rows'] if row['name'] != 'x3d'}
    assert {row['name']: row['acc'] for row in report['rows']} == expected
    assert trials.failed() == []


def test_resume_refuses_changed_settings_and_edited_configs(setup, capsys):
    tmp = setup['tmp']
    search = write(tmp / 'search.py', f'''
        _base_ = [{SEARCH!r}]
        search = dict(population_size=64)
        ''')
    train = write(tmp / 'train_copy.py', f'''
        _base_ = [{setup['train']!r}]
        ''')
    trials = setup['trials']('edited', search_config=search,
                             train_config=train, scores=['flops', 'random'])
    trials.prepare()
    trials.search()
    argv = [search, '--train-config', train, '--work-dir',
            str(tmp / 'edited'), '--num-candidates', str(CANDIDATES),
            '--seeds', '2', '--no-x3d', '--scores', 'flops', 'random']
    fake = [sys.executable, setup['trainer']]

    def main(extra):
        return load_tool('search_trials').main(argv + extra,
                                               train_command=fake)

    def error(extra):
        capsys.readouterr()
        assert main(extra) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1
        return err

    assert error([]) == (
        f'error: work dir {tmp / "edited"} already holds these search '
        'trials; pass --resume to continue them, --report-only to report '
        'them, or choose another --work-dir\n')
    assert error(['--resume', '--band', '0.7']) == (
        f'error: work dir {tmp / "edited"} holds search trials with band '
        '0.8, not 0.7; choose another --work-dir (or repeat its settings)\n')
    assert error(['--resume', '--search-seed', '1']).startswith(
        f'error: work dir {tmp / "edited"} holds search trials with '
        'search_seed 0, not 1;')
    # the same file, its content edited: the search config ...
    plan = trials.plan
    write(tmp / 'search.py', f'''
        _base_ = [{SEARCH!r}]
        search = dict(population_size=32)
        ''')
    err = error(['--resume'])
    assert err.startswith(
        f'error: work dir {tmp / "edited"} holds search trials made with '
        'another content of the search config (sha256 '
        f"{plan['settings']['search_config_sha256'][:12]}, now ")
    assert err.endswith('edited since); restore it or choose another '
                        '--work-dir\n')
    # ... a report reads what is there, with a note
    capsys.readouterr()
    assert main(['--report-only']) == 0
    out = capsys.readouterr().out
    assert 'note: the search config does not load as it did for the plan' \
        in out
    write(tmp / 'search.py', f'''
        _base_ = [{SEARCH!r}]
        search = dict(population_size=64)  # a comment is no change
        ''')
    # ... and the training config's base
    write(tmp / 'train_copy.py', f'''
        _base_ = [{setup['train']!r}]
        train_cfg = dict(max_epochs=9)
        ''')
    assert 'another content of the training config' in error(['--resume'])
    write(tmp / 'train_copy.py', f'''
        _base_ = [{setup['train']!r}]
        ''')
    assert main(['--resume']) == 0  # restored: it trains
    assert sorted(called(setup)) == sorted(
        f'{name}_seed{seed}' for name in ('flops', 'random')
        for seed in (0, 1))


# ----------------------------------------------------------------------
# the tool: bad inputs
BAD_INPUTS = [
    (['--scores', 'stentr', 'zen_score'],
     "error: --scores: unknown score 'zen_score'; known: stentr, "
     'stentr_norefine, stentr_coverage, flops, params, random, zen, naswot, '
     'synflow, gradnorm, zico'),
    (['--seeds', '1'], 'error: --seeds must be an integer in 2..100 (a mean '
     'and its spread need two runs at least), got 1'),
    (['--num-candidates', '0'], 'error: --num-candidates must be an integer '
     'in 1..200000, got 0'),
    (['--num-candidates', '10000000'], 'error: --num-candidates must be an '
     'integer in 1..200000, got 10000000'),
    (['--band', '2'], 'error: --band must be a number in (0, 1], got 2.0'),
    (['--band', '0'], 'error: --band must be a number in (0, 1], got 0.0'),
    (['--band', '1'], 'error: random: none of 5 draws is within the '
     'budgets with FLOPs >= 1.72e+07 (1 x the FLOPs budget); lower --band '
     'or raise --num-candidates'),
    (['--search-seed', '-1'], 'error: --search-seed must be an integer in '
     '0..2147483647, got -1'),
    (['--first-seed', '-3'], 'error: --first-seed must be an integer in '
     '0..2147483643, got -3'),
    (['--final-epochs', '0'], 'error: --final-epochs must be an integer in '
     '1..10000, got 0'),
    (['--seeds', 'x'], "error: argument --seeds: invalid int value: 'x' "
     '(see --help)'),
    (['--no-x3d', '--x3d-config', 'a.py'], 'error: argument --x3d-config: '
     'not allowed with argument --no-x3d (see --help)'),
    (['--train-config', '/no/such/train.py'],
     "error: --train-config: config file '/no/such/train.py' does not "
     'exist'),
    (['--x3d-config', '/no/such/x3d.py'],
     "error: --x3d-config: config file '/no/such/x3d.py' does not exist"),
    (['--x3d-config', '{no_head}'], 'error: --x3d-config {no_head}: '
     'model.cls_head.in_channels must be a positive integer, got None'),
    (['--search', '/no/such/search.py'],
     "error: config file '/no/such/search.py' does not exist"),
    (['--cfg-options', 'search.budgets.latency=5'],
     'error: search.budgets.latency: the trials compare scores under flops '
     '/ params / layers / max_feature / activation_bytes budgets only'),
    (['--cfg-options', 'search.budgets.flops=-1'],
     'error: {search} with score stentr: search.budgets: budget flops must '
     'be a positive, finite number, got -1'),
    (['--resume'], 'error: --resume: no search trials in {work} (no '
     'trials_plan.json); run without it to start them'),
    (['--report-only'], 'error: --report-only: no search trials in {work} '
     '(no trials_plan.json); run without it to start them'),
    (['--jobs', '0'], 'error: --jobs must be an integer >= 1, got 0'),
    (['--threads', '-1'], 'error: --threads must be an integer >= 1, got '
     '-1'),
    (['--launcher', 'slurm'], 'error: --launcher slurm needs --partition '
     'NAME'),
    (['--gpus', '1', '--jobs', '2'], 'error: --jobs and --gpus: give one; '
     'with --gpus G the queue runs --runs-per-gpu runs on each GPU'),
]


def run_tool_main(setup, capsys, argv):
    """The exit code of the trials tool's main on ``argv`` (with the
    stand-in trainer; argparse's usage errors caught) and what it wrote to
    stderr."""
    capsys.readouterr()
    try:
        code = load_tool('search_trials').main(
            argv, train_command=[sys.executable, setup['trainer']])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize('extra,message', BAD_INPUTS)
def test_tool_bad_inputs_one_line_exit_2(extra, message, setup, capsys):
    tmp = setup['tmp']
    no_head = write(tmp / 'no_head.py', f'''
        _base_ = [{X3D_CONFIG!r}]
        model = dict(cls_head=dict(_delete_=True, type='I3DHead'))
        ''')
    work = str(tmp / 'bad')
    values = dict(no_head=no_head, search=SEARCH, work=work)
    extra = [value.format(**values) for value in extra]
    search = SEARCH
    if extra[:1] == ['--search']:
        search, extra = extra[1], extra[2:]
    train = setup['train']
    argv = [search, '--train-config', train, '--work-dir', work,
            '--num-candidates', '5'] + extra
    code, err = run_tool_main(setup, capsys, argv)
    assert code == 2
    assert err == message.format(**values) + '\n'
    assert not osp.exists(work)


@pytest.mark.parametrize('content,extra,message', [
    ('results.jsonl', [], 'work dir {work} holds results.jsonl but no '
     'trials_plan.json: the results of another study (or of a damaged one) '
     'that a new study must not mix with its own; choose another '
     '--work-dir'),
    ('study_plan.json', [], 'work dir {work} holds study_plan.json but no '
     'trials_plan.json'),
    ('runs', [], 'work dir {work} holds runs but no trials_plan.json'),
    (None, ['--metric', 'acc/top7'], "--metric 'acc/top7': the validation "
     'of --train-config {train} logs acc/top1, acc/top5, acc/mean1; choose '
     'one of them'),
    (None, ['--train-cfg-options', 'train_cfg.max_epochs=0'],
     '--train-config {train}: train_cfg.max_epochs must be an integer >= 1, '
     'got 0; every run must train and validate'),
    (None, ['--train-cfg-options', 'nokey'], "--train-cfg-options: 'nokey' "
     'is not KEY=VALUE'),
])
def test_tool_refuses_foreign_work_dirs_and_untrainable_settings(
        setup, capsys, tmp_path, content, extra, message):
    work = tmp_path / 'work'
    work.mkdir()
    if content == 'runs':
        (work / 'runs').mkdir()
    elif content:
        (work / content).write_text('{}\n')
    before = sorted(os.listdir(work))
    argv = [SEARCH, '--train-config', setup['train'], '--work-dir',
            str(work), '--num-candidates', '5'] + extra
    code, err = run_tool_main(setup, capsys, argv)
    err = err.splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith('error: ' + message.format(
        work=work, train=setup['train'])), err[0]
    assert sorted(os.listdir(work)) == before


# ----------------------------------------------------------------------
# end to end, real training
@pytest.mark.slow
def test_tool_trains_tiny_trials_with_x3d(tmp_path, capsys):
    data = str(tmp_path / 'data')
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'data',
                                  'synthetic_motion.py'), '--out', data,
         '--num-videos', '40', '--size', '32', '--frames', '16'],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    train = write(tmp_path / 'train.py', f'''
        _base_ = [{osp.join(ROOT, 'configs', 'e3d',
                            'e3d_xs_8x4x1_synthetic-motion.py')!r}]
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
    work_dir = str(tmp_path / 'trials')
    argv = [SEARCH, '--train-config', train, '--work-dir', work_dir,
            '--scores', 'stentr', 'flops', '--num-candidates', '50',
            '--seeds', '2', '--no-progress', '--train-cfg-options',
            'train_cfg.max_epochs=1']
    tool = load_tool('search_trials')
    assert tool.main(argv) == 0
    out = capsys.readouterr()
    report = json.load(open(osp.join(work_dir, 'trials.json')))
    assert report['runs_done'] == report['num_runs']
    rows = {row['name']: row for row in report['rows']}
    assert list(rows) == ['stentr', 'flops', 'x3d']
    for row in rows.values():
        assert row['n'] == 2 and 0 <= row['mean'] <= 1
    assert rows['x3d']['cost']['flops'] == 17013760
    # the training clip (8x64x64) is not the search clip: a note says so
    assert report['notes'][0].startswith(
        'the training clip (8x64x64) is not the search clip (8x40x40)')
    assert 'X3D (equal FLOPs)' in out.out
    # resuming finished trials trains nothing and reports the same
    assert tool.main(argv + ['--resume']) == 0
    again = capsys.readouterr()
    assert again.out == out.out
    assert 'training' not in again.err and 'search ' not in again.err
