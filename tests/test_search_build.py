"""The search's shared pieces: its modules import without cycles, one
builder of the searcher of a config (the search tool, the rank study and the
E3D vs X3D bench build through it) and the family of searches."""
import ast
import json
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from e3d_plugin.structure import load_structure
from tests.helpers import ROOT, load_tool

SEARCH_XS = osp.join(ROOT, 'configs', 'search_e3d_xs.py')
MOTION_HARD = osp.join(ROOT, 'configs', 'search_e3d_xs_motion-hard.py')


# ----------------------------------------------------------------------
# imports
def _imports(path):
    """``(module, level, at top level)`` of every ``from ... import`` of
    the file at ``path``."""
    tree = ast.parse(open(path).read())
    top = {id(node) for node in tree.body}
    return [(node.module, node.level, id(node) in top)
            for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]


@pytest.mark.parametrize('path,other', [
    ('e3d_plugin/nas/results.py', 'evolution'),
    ('e3d_plugin/nas/state.py', 'evolution'),
    ('e3d_plugin/nas/state.py', 'results'),
    ('e3d_plugin/study/report.py', 'runner'),
    ('e3d_plugin/study/proxies.py', 'runner'),
])
def test_no_import_back(path, other):
    found = [m for m, level, _ in _imports(osp.join(ROOT, path))
             if level == 1 and m == other]
    assert found == []


@pytest.mark.parametrize('path', ['e3d_plugin/nas/evolution.py',
                                  'e3d_plugin/nas/results.py',
                                  'e3d_plugin/study/report.py'])
def test_package_imports_at_module_level(path):
    inner = [(m, level) for m, level, top in _imports(osp.join(ROOT, path))
             if level >= 1 and not top]
    assert inner == []


@pytest.mark.parametrize('order', [
    ('e3d_plugin.nas.results', 'e3d_plugin.nas.evolution',
     'e3d_plugin.study.report', 'e3d_plugin.study.runner'),
    ('e3d_plugin.nas.evolution', 'e3d_plugin.nas.results',
     'e3d_plugin.study.runner', 'e3d_plugin.study.report'),
])
def test_modules_import_in_either_order(order):
    code = '; '.join(f'import {name}' for name in order) + (
        '; import e3d_plugin.nas as n, e3d_plugin.study as s; '
        'from e3d_plugin.nas import evolution as e, results as r, state; '
        'from e3d_plugin.study import proxies, report, runner; '
        'print(n.SearchError is e.SearchError is r.SearchError '
        'is state.SearchError, n.Candidate is e.Candidate is r.Candidate '
        'is state.Candidate, e.CurvePoint is r.CurvePoint is '
        'state.CurvePoint, e.SearchState is r.SearchState is '
        'state.SearchState, s.PROXIES is runner.PROXIES is proxies.PROXIES '
        'and report.plan_proxies is proxies.plan_proxies, '
        'len(proxies.PROXIES))')
    done = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['True'] * 5 + ['6']


def test_public_names_stay_where_they_were():
    from e3d_plugin.nas import Candidate, SearchError, evolution, state
    from e3d_plugin.study import PROXIES, runner
    assert evolution.SearchError is SearchError is state.SearchError
    assert issubclass(SearchError, ValueError)
    assert evolution.Candidate is Candidate
    assert Candidate(1.0, 2, None, {})._fields == ('score', 'order',
                                                    'structure', 'cost')
    assert runner.PROXIES is PROXIES
    assert PROXIES == ('stentr_score', 'stentr_score_norefine', 'flops',
                       'params', 'layers', 'random_score')


# ----------------------------------------------------------------------
# build_search
def test_build_search_clip_defaults_to_the_space():
    from e3d_plugin.nas import SearchBuild, build_search
    built = build_search(Config.fromfile(SEARCH_XS), progress=False)
    assert isinstance(built, SearchBuild)
    searcher = built.searcher
    assert type(searcher).__name__ == 'EntropyEvolution'
    assert built.space is searcher.space and built.score is searcher.score
    assert tuple(built.image_size) == (64, 64) and built.frames == 8
    assert built.budgets == dict(flops=4.0e7, layers=20)
    assert built.init_structure == searcher.init_structure
    assert built.init_structure == load_structure('E3D-XS')
    assert searcher.num_candidates == 20000 and searcher.seed == 0
    assert searcher.work_dir is None and searcher.progress is False


def test_build_search_honours_the_search_clip_and_overrides(tmp_path):
    from e3d_plugin.cost import compute_cost
    from e3d_plugin.nas import build_search
    cfg = Config.fromfile(SEARCH_XS)
    cfg.merge_from_dict({'search.image_size': 48, 'search.frames': 4})
    built = build_search(cfg, seed=7, num_candidates=123,
                         work_dir=str(tmp_path))
    assert (built.image_size, built.frames) == (48, 4)
    searcher = built.searcher
    assert (searcher.image_size, searcher.frames) == (48, 4)
    # the space keeps its own clip; the cost is the search's
    assert tuple(built.space.image_size) == (64, 64)
    assert built.space.frames == 8
    cost = searcher.evaluate_cost(built.init_structure)
    assert cost['flops'] == compute_cost(built.init_structure, 48, 4).flops
    assert searcher.seed == 7 and searcher.num_candidates == 123
    assert searcher.work_dir == str(tmp_path) and searcher.progress is True


def test_rank_study_setup_is_the_build():
    from e3d_plugin.study import build_searcher
    cfg = Config.fromfile(SEARCH_XS)
    cfg.merge_from_dict({'search.image_size': 48, 'search.frames': 4})
    setup = build_searcher(cfg, num_candidates=50)
    assert (setup.image_size, setup.frames) == (48, 4)
    assert setup.space is setup.searcher.space
    assert setup.score is setup.searcher.score
    assert setup.budgets == dict(flops=4.0e7, layers=20)
    assert setup.searcher.num_candidates == 50
    assert setup.searcher.progress is False


def test_bench_clip_comes_from_the_search(tmp_path):
    bench = load_tool(osp.join(ROOT, 'bench', 'e3d_vs_x3d.py'))
    space, template, budgets, image_size, frames = bench.load_search_space()
    assert tuple(image_size) == (40, 40) and frames == 8
    assert budgets == dict(flops=1.72e7, layers=20)
    assert template == load_structure('E3D-XS')
    assert space.check(template) == []
    config = tmp_path / 'search_clip.py'
    config.write_text(f'_base_ = [{MOTION_HARD!r}]\n'
                      'search = dict(image_size=32, frames=4)\n')
    space, _, budgets, image_size, frames = bench.load_search_space(
        str(config))
    assert (image_size, frames) == (32, 4)
    assert tuple(space.image_size) == (40, 40) and space.frames == 8
    assert budgets == dict(flops=1.72e7, layers=20)


# ----------------------------------------------------------------------
# job and family
def test_load_search_job_keeps_a_family_its_own_options(tmp_path):
    from e3d_plugin.nas import SearchError
    from e3d_plugin.nas.job import is_family, load_search_job
    family = tmp_path / 'fam.py'
    family.write_text(f'family = dict(A={SEARCH_XS!r})\n'
                      "work_dir = 'somewhere'\n")
    cfg, work_dir = load_search_job(
        str(family), {'search.num_candidates': 5, 'work_dir': 'there'})
    assert is_family(cfg) and work_dir == 'there'
    cfg, work_dir = load_search_job(SEARCH_XS, None, None)
    assert not is_family(cfg)
    assert work_dir == './work_dirs/search_e3d_xs'
    assert load_search_job(SEARCH_XS, None, 'mine')[1] == 'mine'
    with pytest.raises(SearchError, match="the config has no key 'nope'"):
        load_search_job(SEARCH_XS, {'nope': 1})


def test_run_family_searches_each_member(tmp_path):
    from e3d_plugin.nas import SearchError
    from e3d_plugin.nas.family import (format_family_table, load_family,
                                       run_family)
    from e3d_plugin.nas.job import load_search_job
    family = tmp_path / 'fam.py'
    family.write_text(f'family = dict(A={SEARCH_XS!r}, B={MOTION_HARD!r})\n'
                      "work_dir = 'unused'\n")
    options = {'search.num_candidates': 300, 'work_dir': 'x'}
    cfg, _ = load_search_job(str(family), options)
    work_dir = str(tmp_path / 'out')
    announced = []
    summaries = run_family(
        cfg, str(family), work_dir, cfg_options=options, seed=4,
        progress=False, announce=lambda *a: announced.append(a))
    assert announced == [(1, 2, 'A', SEARCH_XS), (2, 2, 'B', MOTION_HARD)]
    assert list(summaries) == ['A', 'B']
    on_disk = json.load(open(osp.join(work_dir, 'family_summary.json')))
    assert on_disk == summaries
    for name, size, flops in (('A', 64, 4.0e7), ('B', 40, 1.72e7)):
        member = json.load(open(osp.join(work_dir, name,
                                         'search_summary.json')))
        assert member == summaries[name]
        assert member['seed'] == 4 and member['num_evaluated'] == 300
        assert member['image_size'] == [size, size]
        assert member['best_flops'] <= flops
        assert osp.isfile(osp.join(work_dir, name, 'search.log'))
    lines = format_family_table(summaries).splitlines()
    assert lines[0].split() == ['member', 'best', 'score', 'GFLOPs',
                                'params', 'M', 'layers', 'latency', 'ms',
                                'search', 's']
    assert [line.split()[0] for line in lines[1:]] == ['A', 'B']
    assert lines[1].split()[1] == f"{summaries['A']['best_score']:.4f}"
    assert lines[1].split()[5] == '-'
    cfg.family = {}
    with pytest.raises(SearchError, match='family must be a non-empty dict'):
        load_family(cfg, str(family))
