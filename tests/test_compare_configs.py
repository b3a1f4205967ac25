"""E3D vs X3D at equal FLOPs: the three configs of ``configs/compare``, the
documented draws of their structures, and ``bench/e3d_vs_x3d.py``."""
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import textwrap

import pytest
import torch
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

from e3d_plugin.cost import compute_cost
from e3d_plugin.structure import load_structure
from tests.helpers import ROOT, load_tool

BENCH = load_tool(osp.join(ROOT, 'bench', 'e3d_vs_x3d.py'))
#: model -> (backbone type, FLOPs at 8x40x40 as the config headers state).
EXPECTED = {
    'e3d-searched': ('E3D', 17070720),
    'e3d-random': ('E3D', 16943616),
    'x3d': ('X3D', 17013760),
}


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    # the configs name their structure files relative to the root
    monkeypatch.chdir(ROOT)
    init_default_scope('mmaction')


@pytest.fixture(scope='module')
def costs():
    """``config_cost`` of every compared config (built once)."""
    return {name: BENCH.config_cost(config)
            for name, config in BENCH.CONFIGS.items()}


def test_three_configs_share_the_hard_schedule():
    base = Config.fromfile(
        osp.join(ROOT, 'configs', 'e3d', 'e3d_xs_8x4x1_motion-hard.py'))
    assert set(BENCH.CONFIGS) == set(EXPECTED)
    for name, config in BENCH.CONFIGS.items():
        with open(osp.join(ROOT, config)) as f:
            assert ("_base_ = ['../e3d/e3d_xs_8x4x1_motion-hard.py']"
                    in f.read().splitlines())
        cfg = Config.fromfile(osp.join(ROOT, config))
        for key in ('train_cfg', 'param_scheduler', 'optim_wrapper',
                    'train_dataloader', 'val_dataloader', 'randomness',
                    'default_hooks'):
            assert cfg[key] == base[key], (name, key)
        # the same head for all three: only the backbone differs
        head = dict(cfg.model.cls_head)
        assert head == dict(base.model.cls_head, in_channels=256)
        assert head['type'] == 'I3DHead' and head['num_classes'] == 20
        assert cfg.model.backbone.type == EXPECTED[name][0]
    x3d = Config.fromfile(osp.join(ROOT, BENCH.CONFIGS['x3d']))
    assert dict(x3d.model.backbone) == dict(
        type='X3D', gamma_w=0.5, gamma_b=2.0, gamma_d=0.5)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_config_builds_and_classifies(name):
    cfg = Config.fromfile(osp.join(ROOT, BENCH.CONFIGS[name]))
    model = MODELS.build(cfg.model).eval()
    clip = torch.randn(1, 3, 8, 40, 40)
    with torch.no_grad():
        features = model.backbone(clip)
        if isinstance(features, (tuple, list)):
            features = features[-1]
        scores = model.cls_head(features)
    assert features.shape[:2] == (1, cfg.model.cls_head.in_channels)
    assert features.shape[2] == 8  # no temporal stride in any backbone
    assert tuple(scores.shape) == (1, 20)


def test_backbone_flops_equal_within_ten_percent(costs):
    for name, cost in costs.items():
        assert (cost['frames'], cost['size']) == (8, 40)
        assert cost['type'] == EXPECTED[name][0]
        assert cost['flops'] == EXPECTED[name][1]
    flops = [cost['flops'] for cost in costs.values()]
    assert max(flops) <= 1.1 * min(flops)
    searched = costs['e3d-searched']['flops']
    for cost in costs.values():
        assert abs(cost['flops'] - searched) <= 0.1 * searched


def test_e3d_flops_match_the_cost_model_exactly(costs):
    for name, path in (('e3d-searched', BENCH.SEARCHED_FILE),
                       ('e3d-random', BENCH.RANDOM_FILE)):
        structure = load_structure(osp.join(ROOT, path))
        cost = compute_cost(structure, 40, 8)
        assert costs[name]['flops'] == costs[name]['cost_flops'] == cost.flops
        assert costs[name]['params'] == cost.params
    assert costs['x3d']['cost_flops'] is None


def test_random_structure_is_the_documented_draw():
    drawn = BENCH.draw_random_structure()
    committed = load_structure(osp.join(ROOT, BENCH.RANDOM_FILE))
    assert drawn['structure'].to_dicts() == committed.to_dicts()
    # as the config header states
    assert drawn['draw'] == 17
    assert drawn['cost'] == dict(flops=16943616, params=44296, layers=17)
    assert drawn['reference_flops'] == 17070720
    assert BENCH.temporal_blocks(committed) == []


def test_searched_structure_is_the_search_best():
    from e3d_plugin.study import build_searcher
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'search_e3d_xs_motion-hard.py'))
    assert cfg.search.num_candidates == 20000 and cfg.search.seed == 0
    # drawn before the config refused motion-blind structures
    assert cfg.space.min_temporal_rf == 2
    cfg.merge_from_dict(BENCH.SEARCH_OPTIONS)
    result = build_searcher(cfg).searcher.run()
    committed = load_structure(osp.join(ROOT, BENCH.SEARCHED_FILE))
    assert result['best_structure'].to_dicts() == committed.to_dicts()
    assert result['best_score'] == pytest.approx(48.093021, abs=1e-6)
    assert BENCH.temporal_blocks(committed) == [1, 2, 3]


def test_x3d_grid_rows():
    rows = BENCH.x3d_grid(dict(gamma_w=(0.5, 0.75, 1.0), gamma_b=(2.0, ),
                               gamma_d=(0.5, )))
    assert [row['base_channels'] for row in rows] == [16, 24, 24]
    assert rows[0]['stage_blocks'] == [1, 1, 3, 2]
    assert rows[0]['out_channels'] == 256
    assert rows[0]['flops'] == 17013760
    # 0.75 and 1.0 round to the same width: the same network
    assert rows[1]['flops'] == rows[2]['flops'] > rows[0]['flops']


def test_shorten_schedulers():
    schedulers = [
        dict(type='LinearLR', begin=0, end=1, by_epoch=True),
        dict(type='CosineAnnealingLR', T_max=7, begin=1, end=8,
             by_epoch=True)]
    assert BENCH.shorten_schedulers(schedulers, 8, 3) == [
        dict(type='LinearLR', begin=0, end=1, by_epoch=True),
        dict(type='CosineAnnealingLR', T_max=2, begin=1, end=3,
             by_epoch=True)]
    assert BENCH.shorten_schedulers(schedulers, 8, 1) == [schedulers[0]]
    assert BENCH.shorten_schedulers(schedulers, 8, 8) == schedulers


def test_bench_config_applies_epochs_and_data(tmp_path):
    path = BENCH.write_bench_config(
        str(tmp_path / 'x3d.py'), BENCH.CONFIGS['x3d'], epochs=2,
        data_root='/some/data')
    cfg = Config.fromfile(path)
    assert cfg.train_cfg.max_epochs == 2
    assert [s['end'] for s in cfg.param_scheduler] == [1, 2]
    assert cfg.param_scheduler[1]['T_max'] == 1
    for split, ann in (('train', 'train_list.txt'), ('val', 'val_list.txt'),
                       ('test', 'val_list.txt')):
        dataset = cfg[f'{split}_dataloader'].dataset
        assert dataset.ann_file == f'/some/data/{ann}'
        assert dataset.data_prefix == dict(video='/some/data/videos')
        assert dataset.pipeline[-1]['type'] == 'PackActionInputs'
    assert cfg.model.backbone.type == 'X3D'


def test_speed_and_spread():
    stats = BENCH.spread([50.0, 60.0, None, 70.0])
    assert stats == dict(n=3, mean=60.0, std=10.0, min=50.0, max=70.0)
    assert BENCH.spread([5.0])['std'] is None
    assert BENCH.spread([]) is None


FAKE_TRAIN = '''
import json, os, sys
config, work_dir = sys.argv[1], sys.argv[sys.argv.index('--work-dir') + 1]
seed = int(next(a for a in sys.argv if a.startswith('randomness.seed='))
           .split('=')[1])
name = os.path.splitext(os.path.basename(config))[0]
with open(os.environ['FAKE_CALLS'], 'a') as f:
    f.write(f'{name} {seed}\\n')
if os.environ.get('FAKE_FAIL') == f'{name} {seed}':
    sys.exit(3)
if os.environ.get('FAKE_KILL') == f'{name} {seed}':
    import signal
    os.kill(os.getppid(), signal.SIGKILL)  # the bench dies mid-run
    sys.exit(0)
out = os.path.join(work_dir, '20260101_000000', 'vis_data')
os.makedirs(out)
with open(os.path.join(out, 'scalars.json'), 'w') as f:
    for t in (2.0, 0.5, 0.8):
        f.write(json.dumps(dict(lr=0.1, time=t, step=1)) + '\\n')
    for epoch, acc in ((1, 0.1), (2, 0.3 + 0.1 * seed), (3, 0.2 + 0.1 * seed)):
        f.write(json.dumps({'acc/top1': acc, 'time': 9.0, 'step': epoch})
                + '\\n')
'''


def _fake_bench(tmp_path, monkeypatch, resume=False):
    data = tmp_path / 'data'
    if not data.exists():
        (data / 'videos').mkdir(parents=True)
        for name in ('train_list.txt', 'val_list.txt'):
            (data / name).write_text('a.mp4 0\n')
    script = tmp_path / 'fake_train.py'
    script.write_text(textwrap.dedent(FAKE_TRAIN))
    monkeypatch.setenv('FAKE_CALLS', str(tmp_path / 'calls.txt'))
    return BENCH.Comparison(
        str(tmp_path / 'work'), seeds=2, epochs=3, data_root=str(data),
        resume=resume, train_command=[sys.executable, str(script)],
        stream=open(os.devnull, 'w'), queue=dict(jobs=1))


def _calls(tmp_path):
    return (tmp_path / 'calls.txt').read_text().split('\n')[:-1]


FAKE_COSTS = {name: dict(flops=flops, params=1, cost_flops=None, frames=8,
                         size=40, type=kind)
              for name, (kind, flops) in EXPECTED.items()}


def test_bench_trains_every_run_and_resume_skips_finished(tmp_path,
                                                          monkeypatch):
    bench = _fake_bench(tmp_path, monkeypatch)
    monkeypatch.setenv('FAKE_FAIL', 'x3d 1')
    records = bench.train()
    # seed by seed, one process per run, the failure recorded
    assert _calls(tmp_path) == [
        'e3d-searched 0', 'e3d-random 0', 'x3d 0',
        'e3d-searched 1', 'e3d-random 1', 'x3d 1']
    assert [r['status'] for r in records] == ['done'] * 5 + ['failed']
    assert records[-1]['reason'] == 'exit code 3'
    done = records[0]
    assert done['final'] == 0.2 and done['best'] == 0.3
    assert done['clips_per_s'] == 16 / 0.8
    assert done['iter_time_s'] == 0.8 and done['batch_size'] == 16

    # a rerun without --resume refuses the work dir
    with pytest.raises(BENCH.BenchError, match='pass --resume'):
        _fake_bench(tmp_path, monkeypatch).train()
    # --resume trains only the run that did not finish
    monkeypatch.delenv('FAKE_FAIL')
    resumed = _fake_bench(tmp_path, monkeypatch, resume=True)
    assert [(r['model'], r['seed']) for r in resumed.train()] == [('x3d', 1)]
    assert len(_calls(tmp_path)) == 7
    assert resumed.train() == []

    table = resumed.table(FAKE_COSTS)
    row = table['models']['e3d-searched']
    assert row['seeds'] == [0, 1]
    assert row['final']['mean'] == pytest.approx(25.0)
    assert row['final']['std'] == pytest.approx(statistics.stdev([20, 30]))
    assert (row['best']['min'], row['best']['max']) == (
        pytest.approx(30.0), pytest.approx(40.0))
    assert row['clips_per_s']['mean'] == 20.0
    text = BENCH.format_table(table)
    assert '| e3d-searched | 17.07 | 0.000 | 2/2 | 25.0 ± 7.1 (20.0-30.0)' \
        in text
    with open(bench.results_path) as f:
        assert len(f.read().splitlines()) == 7
    with open(osp.join(bench.work_dir, 'settings.json')) as f:
        settings = json.load(f)
    assert (settings['epochs'], settings['seeds']) == (3, 2)
    assert settings['data_root'] == str(tmp_path / 'data')


def test_killed_bench_resumes_only_the_unfinished_runs(tmp_path,
                                                     monkeypatch):
    bench = _fake_bench(tmp_path, monkeypatch)
    script = textwrap.dedent(f'''
        import os, sys
        sys.path.insert(0, {osp.join(ROOT, 'bench')!r})
        import e3d_vs_x3d as bench
        b = bench.Comparison({bench.work_dir!r}, seeds=2, epochs=3,
                             data_root={bench.data_root!r},
                             train_command=[sys.executable,
                                            {str(tmp_path / 'fake_train.py')!r}],
                             queue=dict(jobs=1))
        b.train()
        ''')
    proc = subprocess.run([sys.executable, '-c', script], timeout=300,
                          env=dict(os.environ, FAKE_KILL='x3d 0'),
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert _calls(tmp_path) == ['e3d-searched 0', 'e3d-random 0', 'x3d 0']
    resumed = _fake_bench(tmp_path, monkeypatch, resume=True)
    assert [(r['model'], r['seed']) for r in resumed.train()] == [
        ('x3d', 0), ('e3d-searched', 1), ('e3d-random', 1), ('x3d', 1)]
    assert _calls(tmp_path)[3:] == ['x3d 0', 'e3d-searched 1',
                                    'e3d-random 1', 'x3d 1']


def test_bench_resume_refuses_changed_settings(tmp_path, monkeypatch):
    _fake_bench(tmp_path, monkeypatch).prepare()
    changed = _fake_bench(tmp_path, monkeypatch, resume=True)
    changed.epochs = 4
    with pytest.raises(BENCH.BenchError, match='epochs 3, not 4'):
        changed.prepare()


def test_bench_bad_inputs_one_line(tmp_path, capsys):
    missing = str(tmp_path / 'nope')
    assert BENCH.main(['--data-root', missing, '--work-dir',
                       str(tmp_path / 'w')]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --data-root '{missing}' does not exist; "
                   'generate it with python tools/data/synthetic_motion.py '
                   f'--preset hard --out {missing}')
    assert BENCH.main(['--resume', '--work-dir', str(tmp_path / 'w2')]) == 2
    assert 'no comparison in' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        BENCH.main(['--seeds', 'x'])
    assert e.value.code == 2
