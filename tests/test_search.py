"""Search: space validity, budgets, determinism, resume, tool outputs."""
import json
import os.path as osp
import random

import pytest
from mmengine.config import Config

from e3d_plugin.cost import compute_cost
from e3d_plugin.nas import E3DSearchSpace, EntropyEvolution, SearchError
from e3d_plugin.nas import STEntrScore
from e3d_plugin.structure import Structure, load_structure
from tests.helpers import (ROOT, kill_after_first_checkpoint,
                           load_search_tool, run_capturing_population)

# the M search's starting structure (TinyNAS's E3D starting point)
INIT = [dict(block) for block in Config.fromfile(
    osp.join(ROOT, 'configs', 'search_e3d_m.py')).init_structure]
SCORE = dict(type='STEntrScore', image_size=224, frames=16)
SPACE = dict(type='E3DSearchSpace', image_size=224, frames=16, max_depth=6)


def searcher(**kwargs):
    args = dict(score=SCORE, space=SPACE, init_structure=INIT,
                budgets=dict(flops=5.0e9, layers=83), num_candidates=20000,
                population_size=64, seed=0, progress=False,
                checkpoint_interval=0)
    args.update(kwargs)
    return EntropyEvolution(**args)


@pytest.mark.parametrize('name,size,frames,refined,plain', [
    ('E3D-S', 160, 13, 202.8559146389, 183.3612727275416),
    ('E3D-M', 224, 16, 204.9404058703, 183.80131988320085),
    ('E3D-L', 312, 16, 411.8081687491, 369.9995439105423),
])
def test_reference_scores(name, size, frames, refined, plain):
    structure = load_structure(name)
    assert STEntrScore(size, frames)(structure) == pytest.approx(
        refined, rel=1e-9)
    assert STEntrScore(size, frames, refine=False)(structure) == (
        pytest.approx(plain, rel=1e-9))


def test_mutants_always_valid():
    space = E3DSearchSpace(image_size=160, frames=13,
                           kinds=('dwbtn', 'btn', 'res'),
                           kernels=((1, 3), (1, 5), (3, 3), (3, 5), (5, 5),
                                    (1, 7)), max_depth=8)
    rng = random.Random(0)
    population = [Structure.from_dicts(INIT)]
    for step in range(5000):
        parent = population[rng.randrange(len(population))]
        if step % 5 == 0 and len(population) > 1:
            other = population[rng.randrange(len(population))]
            child = space.crossover(parent, other, rng)
        else:
            child = space.mutate(parent, rng)
        child.validate()
        assert space.check(child) == []
        widths = [b.out_channels for b in child[:-1]]
        assert widths == sorted(widths)
        assert child[1].depth <= 3
        population.append(child)
        if len(population) > 50:
            population.pop(0)
    kinds = {b.kind for s in population for b in s[1:-1]}
    assert len(kinds) > 1


def test_budgets_never_exceeded_and_deterministic():
    budgets = dict(flops=1.0e9, params=1.5e6, layers=50)
    first = searcher(budgets=budgets, seed=3).run()
    second = searcher(budgets=budgets, seed=3).run()
    for entry in first['top_k']:
        cost = compute_cost(entry['structure'], 224, 16)
        assert cost.flops <= 1.0e9 and cost.params <= 1.5e6
        assert cost.layers <= 50
        assert entry['cost'] == cost._asdict()
    assert first['best_structure'] == second['best_structure']
    assert first['best_score'] == second['best_score']
    assert first['curve'] == second['curve']
    assert first['num_evaluated'] == 20000
    assert first['best_score'] == pytest.approx(
        STEntrScore(224, 16)(first['best_structure']), rel=1e-12)
    other = searcher(budgets=budgets, seed=4).run()
    assert other['curve'] != first['curve']


def test_population_members_within_budget_and_unique(monkeypatch):
    _, heap = run_capturing_population(searcher(num_candidates=5000),
                                       monkeypatch)
    structures = [e[2] for e in heap]
    assert len(structures) == len(set(structures)) == 64
    for structure in structures:
        cost = compute_cost(structure, 224, 16)
        assert cost.flops <= 5.0e9 and cost.layers <= 83


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    full = searcher(num_candidates=30000, seed=1).run()
    work_dir = str(tmp_path)
    killed = searcher(num_candidates=30000, seed=1, work_dir=work_dir,
                      checkpoint_interval=10000)
    assert kill_after_first_checkpoint(killed, monkeypatch) == [10000]
    resumed = searcher(num_candidates=30000, seed=1, work_dir=work_dir,
                       checkpoint_interval=10000).run(resume=True)
    for key in ('best_score', 'best_structure', 'best_cost', 'curve',
                'num_evaluated'):
        assert resumed[key] == full[key], key
    assert [e['structure'] for e in resumed['top_k']] == [
        e['structure'] for e in full['top_k']]


def test_search_errors(tmp_path):
    with pytest.raises(SearchError, match='no structure of the space meets '
                       'the flops budget 1e\\+06: the smallest found needs'):
        searcher(budgets=dict(flops=1e6)).run()
    with pytest.raises(SearchError, match="unknown budget 'gflops'"):
        searcher(budgets=dict(gflops=5))
    with pytest.raises(SearchError, match='--resume: no checkpoint at'):
        searcher(work_dir=str(tmp_path)).run(resume=True)
    (tmp_path / 'search_checkpoint.pkl').write_bytes(b'not a pickle')
    with pytest.raises(SearchError, match='is corrupt'):
        searcher(work_dir=str(tmp_path)).run(resume=True)
    with pytest.raises(SearchError, match='init_structure: block 1'):
        bad = [dict(b) for b in INIT]
        bad[1]['k'] = 4
        searcher(init_structure=bad)


def test_search_tool_outputs(tmp_path, capsys):
    from e3d_plugin.models import E3D
    tool = load_search_tool()
    work_dir = str(tmp_path / 'm')
    code = tool.main([osp.join(ROOT, 'configs', 'search_e3d_m.py'),
                      '--work-dir', work_dir, '--no-progress', '--seed', '2',
                      '--cfg-options', 'search.num_candidates=20000'])
    assert code == 0
    summary = json.load(open(osp.join(work_dir, 'search_summary.json')))
    assert summary['num_evaluated'] == 20000 and summary['seed'] == 2
    assert summary['best_flops'] <= 5.0e9 and summary['best_layers'] <= 83
    assert summary['budgets'] == {'flops': 5.0e9, 'layers': 83}
    best = load_structure(osp.join(work_dir, 'best_structure.json'))
    assert STEntrScore(224, 16)(best) == pytest.approx(
        summary['best_score'], rel=1e-12)
    assert compute_cost(best, 224, 16).flops == summary['best_flops']
    assert E3D(structure_file=osp.join(work_dir,
                                       'best_structure.json')).structure == (
                                           best)
    png = open(osp.join(work_dir, 'search_curve.png'), 'rb').read(8)
    assert png == b'\x89PNG\r\n\x1a\n'
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(work_dir, 'e3d_searched.py'))
    assert cfg.model.backbone == dict(
        type='E3D',
        structure_file=osp.abspath(osp.join(work_dir,
                                            'best_structure.json')))
    assert cfg.model.cls_head.in_channels == 512
    assert osp.exists(osp.join(work_dir, 'search.log'))


@pytest.mark.parametrize('options,message', [
    (['score.type=Nope'], "error: unknown score type 'Nope'; registered: "
     'RandomScore, STEntrScore'),
    (['search.budgets.flops=1000000'], 'error: no structure of the space '
     'meets the flops budget'),
    (['search=None'], "is missing the required key 'search'"),
])
def test_search_tool_errors(tmp_path, capsys, options, message):
    tool = load_search_tool()
    code = tool.main([osp.join(ROOT, 'configs', 'search_e3d_m.py'),
                      '--work-dir', str(tmp_path), '--no-progress',
                      '--cfg-options', *options])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_search_tool_resume_errors(tmp_path, capsys):
    tool = load_search_tool()
    args = [osp.join(ROOT, 'configs', 'search_e3d_s.py'), '--work-dir',
            str(tmp_path), '--no-progress', '--resume']
    assert tool.main(args) == 2
    assert '--resume: no checkpoint at' in capsys.readouterr().err
    (tmp_path / 'search_checkpoint.pkl').write_text('garbage')
    assert tool.main(args) == 2
    assert 'is corrupt' in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize('name,published', [('s', 202.8559146389),
                                            ('m', 204.9404058703),
                                            ('l', 411.8081687491)])
def test_full_search_beats_published(tmp_path, name, published):
    tool = load_search_tool()
    work_dir = str(tmp_path / name)
    assert tool.main([osp.join(ROOT, 'configs', f'search_e3d_{name}.py'),
                      '--work-dir', work_dir, '--no-progress']) == 0
    summary = json.load(open(osp.join(work_dir, 'search_summary.json')))
    assert summary['num_evaluated'] == 100000
    assert summary['best_score'] >= published



@pytest.mark.parametrize('name,size,frames,flops,layers', [
    ('s', 160, 13, 2.0e9, 83), ('m', 224, 16, 5.0e9, 83),
    ('l', 312, 16, 18.5e9, 167), ('xs', 64, 8, 4.0e7, 20),
    ('m_latency', 224, 16, 5.0e9, 83)])
def test_search_configs_carry_the_published_settings(tmp_path, monkeypatch,
                                                     name, size, frames,
                                                     flops, layers):
    from mmengine.config import Config

    from e3d_plugin.registry import SEARCHERS, build
    monkeypatch.setenv('E3D_LATENCY_DIR', str(tmp_path))
    cfg = Config.fromfile(osp.join(ROOT, 'configs', f'search_e3d_{name}.py'))
    assert (cfg.image_size, cfg.frames) == (size, frames)
    assert cfg.score.image_size == cfg.space.image_size == size
    assert cfg.score.frames == cfg.space.frames == frames
    budgets = dict(cfg.search.budgets)
    assert budgets.pop('flops') == flops and budgets.pop('layers') == layers
    s = build(SEARCHERS, cfg.search.to_dict(), score=cfg.score.to_dict(),
              space=cfg.space.to_dict(), init_structure=cfg.init_structure,
              progress=False)
    assert s.num_candidates == (20000 if name == 'xs' else 100000)
    if name == 'm_latency':
        assert budgets == {'latency': 80.0}
        assert s.latency.settings['num_threads'] == 2
        assert s.latency.settings['batch_size'] == 1
        assert s.latency.table_file.startswith(str(tmp_path))
    else:
        assert budgets == {} and s.latency is None


def test_family_search_runs_each_member(tmp_path, capsys):
    tool = load_search_tool()
    options = ['--cfg-options', 'search.num_candidates=3000']
    work_dir = str(tmp_path / 'family')
    assert tool.main([osp.join(ROOT, 'configs', 'search_e3d_family.py'),
                      '--work-dir', work_dir, '--no-progress', '--seed', '3',
                      *options]) == 0
    family = json.load(open(osp.join(work_dir, 'family_summary.json')))
    assert list(family) == ['S', 'M', 'L']
    out = capsys.readouterr().out
    assert 'member' in out and 'best score' in out
    for name, flops in (('S', 2.0e9), ('M', 5.0e9), ('L', 18.5e9)):
        summary = json.load(open(osp.join(work_dir, name,
                                          'search_summary.json')))
        assert summary == family[name]
        assert summary['seed'] == 3 and summary['num_evaluated'] == 3000
        assert summary['best_flops'] <= flops
    # a member equals the same search run alone
    alone = str(tmp_path / 'alone')
    assert tool.main([osp.join(ROOT, 'configs', 'search_e3d_m.py'),
                      '--work-dir', alone, '--no-progress', '--seed', '3',
                      *options]) == 0
    summary = json.load(open(osp.join(alone, 'search_summary.json')))
    assert summary['best_score'] == family['M']['best_score']
    assert open(osp.join(alone, 'best_structure.json')).read() == open(
        osp.join(work_dir, 'M', 'best_structure.json')).read()
    bad = tmp_path / 'bad_family.py'
    bad.write_text("family = dict(X='nope.py')\n")
    assert tool.main([str(bad), '--work-dir', str(tmp_path / 'x'),
                      '--no-progress']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "family member 'X': no config at" in err[0]
