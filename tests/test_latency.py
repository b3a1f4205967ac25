"""Latency budget: unit keys, the table on disk, and the search with it."""
import json
import os.path as osp
import time

import pytest
import torch.nn as nn

from e3d_plugin.nas import EntropyEvolution, LatencyError, LatencyTable
from e3d_plugin.nas import SearchError
from e3d_plugin.nas.latency import (UnitKey, block_units, structure_units,
                                    time_module)
from e3d_plugin.structure import Structure, load_structure
from tests.helpers import (ROOT, kill_after_first_checkpoint, load_search_tool,
                           run_capturing_population)

# timing settings that keep the tests quick (one short sample per unit)
FAST = dict(warmup=1, warmup_ms=0.0, repeat=1, min_sample_ms=0.0,
            num_threads=1)
XS = load_structure('E3D-XS')
SIZE, FRAMES = 32, 4


def table(tmp_path, name='table.json', **kwargs):
    args = dict(FAST, table_file=str(tmp_path / name))
    args.update(kwargs)
    return LatencyTable(**args)


def test_structure_units_follow_the_strides():
    units = structure_units(load_structure('E3D-S'), 160, 13)
    structure = load_structure('E3D-S')
    # one key per block, plus one for the inner units of deeper blocks
    assert len(units) == len(structure) + sum(b.depth > 1 for b in structure)
    assert sum(count for _, count in units) == sum(b.depth for b in structure)
    first, second, third = units[0][0], units[1][0], units[2][0]
    assert (first.kind, first.in_channels, first.height, first.stride) == (
        'conv', 3, 160, 2)
    assert (second.kind, second.height, second.width, second.frames) == (
        'dwbtn', 80, 80, 13)
    # the inner units of block 1 run at the strided size, stride 1, in==out
    assert (third.height, third.stride, third.in_channels,
            third.out_channels, units[2][1]) == (40, 1, 24, 24, 2)
    assert units[-1][0].height == 5  # 160 halved five times
    # odd sizes: a stride-2 unit maps H to ceil(H / 2)
    _, height, width = block_units(structure[0], 13, 161, 99)
    assert (height, width) == (81, 50)
    key = units[1][0]
    assert UnitKey.parse(key.text()) == key


def test_timed_unit_is_the_backbones_unit(tmp_path):
    from e3d_plugin.models import E3D
    t = table(tmp_path)
    structure = Structure.from_dicts([
        dict(kind='conv', **{'in': 3, 'out': 8}, k=3, kt=1, s=2),
        dict(kind='res', **{'in': 8, 'out': 8}, k=3, kt=3, s=2, L=2, se=0.25),
        dict(kind='btn', **{'in': 8, 'out': 16}, k=3, kt=1, s=1, L=2, btn=8,
             act='swish'),
        dict(kind='dwbtn', **{'in': 16, 'out': 16}, k=5, kt=3, s=2, L=2,
             btn=32, se=0.25),
        dict(kind='conv', **{'in': 16, 'out': 32}, k=1, kt=1, s=1),
    ])
    backbone = E3D(structure=structure.to_dicts())
    modules = [unit for block in backbone.blocks for unit in block]
    keys = []
    for key, count in structure_units(structure, SIZE, FRAMES):
        keys += [key] * count
    assert len(keys) == len(modules) == 8
    for key, module in zip(keys, modules):
        built = t._build_unit(key)[0]
        assert repr(built) == repr(module), key.describe()


def test_table_is_saved_and_reused(tmp_path):
    first = table(tmp_path)
    predicted = first.predict(XS, SIZE, FRAMES)
    distinct = {key for key, _ in structure_units(XS, SIZE, FRAMES)}
    assert first.num_measured == len(distinct) == len(first) == 7
    assert predicted > 0
    assert predicted == pytest.approx(sum(
        count * ms for _, count, ms in first.breakdown(XS, SIZE, FRAMES)),
        rel=1e-12)
    first.save()
    data = json.load(open(tmp_path / 'table.json'))
    assert data['format'] == 'e3d-latency-table'
    assert data['settings']['batch_size'] == 1
    assert data['settings']['num_threads'] == 1
    assert len(data['entries']) == 7
    second = table(tmp_path)
    assert len(second) == 7
    assert second.predict(XS, SIZE, FRAMES) == predicted
    assert second.num_measured == 0
    # a table that may not measure answers from the file...
    third = table(tmp_path, measure=False)
    assert third.predict(XS, SIZE, FRAMES) == predicted
    # ... and names the unit it lacks
    with pytest.raises(LatencyError, match='has no entry for the unit conv '
                       '3->16 1x3x3 s2 relu at 4x64x64 and measure=False'):
        third.predict(XS, 64, FRAMES)


def test_table_settings_are_checked(tmp_path):
    first = table(tmp_path)
    first.predict(XS[:1], SIZE, FRAMES)
    first.save()
    with pytest.raises(LatencyError, match=r'measured under other settings: '
                       r'batch_size 1 \(here 2\)'):
        table(tmp_path, batch_size=2)
    (tmp_path / 'bad.json').write_text('{"format": "e3d-latency-table"')
    with pytest.raises(LatencyError, match='is unreadable'):
        table(tmp_path, name='bad.json')
    with pytest.raises(LatencyError, match="device must be 'cpu' or"):
        table(tmp_path, device='tpu')
    with pytest.raises(LatencyError, match='batch_size must be an integer'):
        table(tmp_path, batch_size=0)


def test_default_table_file_depends_on_settings(tmp_path, monkeypatch):
    monkeypatch.setenv('E3D_LATENCY_DIR', str(tmp_path))
    one = LatencyTable(**dict(FAST, num_threads=1))
    two = LatencyTable(**dict(FAST, num_threads=2))
    assert osp.dirname(one.table_file) == str(tmp_path)
    assert one.table_file != two.table_file
    assert osp.basename(one.table_file).startswith('cpu-')


def test_time_module_measures_time():

    class Sleep(nn.Module):

        def forward(self, x):
            time.sleep(0.004)
            return x

    ms = time_module(Sleep(), (1, 1), warmup=1, warmup_ms=0.0, repeat=3,
                     min_sample_ms=0.0)
    assert 4.0 <= ms < 40.0


# ---------------------------------------------------------------------------
# the search with a latency budget (at E3D-XS's own clip size)
S_SIZE, S_FRAMES = 64, 8


def latency_searcher(tmp_path, **kwargs):
    args = dict(
        score=dict(type='STEntrScore', image_size=S_SIZE, frames=S_FRAMES,
                   stage_weights=(0, 0, 0, 1)),
        space=dict(type='E3DSearchSpace', image_size=S_SIZE, frames=S_FRAMES,
                   max_width=256, max_stem_width=16, max_depth=3),
        init_structure='E3D-XS',
        budgets=dict(layers=20),
        latency=dict(FAST, table_file=str(tmp_path / 'table.json')),
        num_candidates=800, population_size=16, seed=0, progress=False,
        checkpoint_interval=0)
    args.update(kwargs)
    return EntropyEvolution(**args)


def test_latency_budget_holds_for_every_member(tmp_path, monkeypatch):
    free = latency_searcher(tmp_path).run()
    # without a latency budget the table only reports the best's latency
    assert 'latency' in free['best_cost']
    budget = 0.8 * free['best_cost']['latency']
    result, heap = run_capturing_population(
        latency_searcher(tmp_path, budgets=dict(layers=20, latency=budget)),
        monkeypatch)
    assert result['best_cost']['latency'] <= budget
    check = LatencyTable(**dict(FAST, table_file=str(tmp_path / 'table.json'),
                                measure=False))
    for value, _, structure, cost in heap:
        assert cost['latency'] <= budget
        assert check.predict(structure, S_SIZE, S_FRAMES) == cost['latency']
    # the same table gives the same search
    again = latency_searcher(tmp_path, budgets=dict(
        layers=20, latency=budget)).run()
    assert again['best_structure'] == result['best_structure']
    assert again['best_cost'] == result['best_cost']


def test_latency_resume_equals_uninterrupted(tmp_path, monkeypatch):
    budgets = dict(layers=20, latency=1e9)
    base = latency_searcher(tmp_path).run()
    budgets['latency'] = 0.9 * base['best_cost']['latency']
    full = latency_searcher(tmp_path, budgets=budgets).run()
    work_dir = str(tmp_path / 'work')
    killed = latency_searcher(tmp_path, budgets=budgets, work_dir=work_dir,
                              checkpoint_interval=300)
    assert kill_after_first_checkpoint(killed, monkeypatch) == [300]
    resumed = latency_searcher(tmp_path, budgets=budgets, work_dir=work_dir,
                               checkpoint_interval=300).run(resume=True)
    for key in ('best_score', 'best_structure', 'best_cost', 'curve'):
        assert resumed[key] == full[key], key


def test_latency_budget_errors(tmp_path):
    with pytest.raises(SearchError, match=r'no structure of the space meets '
                       r'the latency budget 0\.001 ms: the smallest found '
                       r'needs [0-9.e+-]+ ms latency'):
        latency_searcher(tmp_path, budgets=dict(latency=0.001)).run()
    with pytest.raises(LatencyError, match="latency act must be one of"):
        latency_searcher(tmp_path, latency=dict(act='gelu'))
    with pytest.raises(SearchError, match='budget latency must be a positive'):
        latency_searcher(tmp_path, budgets=dict(latency=-1))


def test_search_tool_reports_latency(tmp_path, capsys):
    tool = load_search_tool()
    work_dir = str(tmp_path / 'xs')
    options = ['search.num_candidates=1000', 'search.budgets.latency=1000',
               f'search.latency.table_file={tmp_path / "t.json"}']
    options += [f'search.latency.{k}={v}' for k, v in FAST.items()]
    code = tool.main([osp.join(ROOT, 'configs', 'search_e3d_xs.py'),
                      '--work-dir', work_dir, '--no-progress',
                      '--cfg-options', *options])
    assert code == 0
    summary = json.load(open(osp.join(work_dir, 'search_summary.json')))
    assert 0 < summary['best_latency'] <= 1000
    assert summary['budgets']['latency'] == 1000
    assert summary['latency_table'] == str(tmp_path / 't.json')
    best = load_structure(osp.join(work_dir, 'best_structure.json'))
    check = LatencyTable(**dict(FAST, table_file=str(tmp_path / 't.json'),
                                measure=False))
    assert check.predict(best, 64, 8) == summary['best_latency']
    code = tool.main([osp.join(ROOT, 'configs', 'search_e3d_xs.py'),
                      '--work-dir', work_dir, '--no-progress',
                      '--cfg-options', 'search.budgets.latency=5',
                      'search.latency.device=tpu'])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "latency device must be 'cpu'" in err[0]


def test_allocator_is_part_of_the_settings(tmp_path, monkeypatch):
    from e3d_plugin.nas.latency import allocator_settings
    assert allocator_settings({}) == 'default'
    assert allocator_settings({
        'LD_PRELOAD': '/usr/lib/libjemalloc.so.2:/x/libfoo.so',
        'MALLOC_TRIM_THRESHOLD_': '1000', 'PATH': '/bin'}) == (
            'libjemalloc.so.2 MALLOC_TRIM_THRESHOLD_=1000')
    for name in ('LD_PRELOAD', 'MALLOC_MMAP_THRESHOLD_',
                 'MALLOC_TRIM_THRESHOLD_'):
        monkeypatch.delenv(name, raising=False)
    first = table(tmp_path)
    first.predict(XS[:1], SIZE, FRAMES)
    first.save()
    assert first.settings['allocator'] == 'default'
    monkeypatch.setenv('MALLOC_MMAP_THRESHOLD_', '4294967296')
    with pytest.raises(LatencyError, match="allocator 'default' \\(here "
                       "'MALLOC_MMAP_THRESHOLD_=4294967296'\\)"):
        table(tmp_path)


def test_analyze_adds_latency(tmp_path, capsys):
    from tests.helpers import analyze_main
    main = analyze_main()
    table_file = str(tmp_path / 'a.json')
    cfg = [f'table_file={table_file}'] + [f'{k}={v}' for k, v in
                                          FAST.items()]
    assert main(['E3D-XS', '--image-size', '64', '--frames', '8', '--json',
                 '--latency', '--measure-latency', '--latency-cfg',
                 *cfg]) == 0
    result = json.loads(capsys.readouterr().out)
    check = LatencyTable(**dict(FAST, table_file=table_file, measure=False))
    assert result['latency_ms'] == check.predict(XS, 64, 8)
    assert result['latency_units_timed'] == 7
    assert result['latency_measured_ms'] > 0
    assert result['latency_settings']['num_threads'] == 1
    assert main(['E3D-XS', '--image-size', '64', '--frames', '8',
                 '--latency', '--latency-cfg', *cfg]) == 0
    assert 'Latency: ' in capsys.readouterr().out
    assert main(['E3D-XS', '--measure-latency']) == 2
    assert '--measure-latency go with --latency' in capsys.readouterr().err


def test_failed_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    from e3d_plugin.nas.latency import table as table_module
    (tmp_path / 'taken.json').mkdir()  # the final rename fails
    taken = table(tmp_path, name='taken.json')
    taken.predict(XS[:1], SIZE, FRAMES)
    with pytest.raises(OSError):
        taken.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['taken.json']
    # interrupted while writing: the old file stays, no tmp file is left
    first = table(tmp_path)
    first.predict(XS[:1], SIZE, FRAMES)
    first.save()
    before = (tmp_path / 'table.json').read_text()
    second = table(tmp_path)
    second.predict(XS[:2], SIZE, FRAMES)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(table_module.json, 'dump', interrupted)
    with pytest.raises(KeyboardInterrupt):
        second.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['table.json',
                                                          'taken.json']
    assert (tmp_path / 'table.json').read_text() == before


def test_deeply_nested_table_file_is_unreadable(tmp_path):
    (tmp_path / 'deep.json').write_text('[' * 100000 + ']' * 100000)
    with pytest.raises(LatencyError, match=r'deep.json is unreadable '
                       r'\(RecursionError: .*\); delete it to measure '
                       'afresh'):
        table(tmp_path, name='deep.json')


def test_latency_package_keeps_its_names():
    """The split into keys, table and timing keeps every name importable
    from ``e3d_plugin.nas.latency``."""
    import e3d_plugin.nas.latency as latency
    from e3d_plugin.nas.latency import keys, table, timing
    assert latency.UnitKey is keys.UnitKey
    assert latency.LatencyTable is table.LatencyTable
    assert latency.time_module is timing.time_module
    assert latency.LatencyError is timing.LatencyError
    for name in ('LatencyTable', 'LatencyError', 'UnitKey', 'block_units',
                 'structure_units', 'time_module', 'time_network',
                 'device_settings', 'allocator_settings',
                 'build_latency_predictor'):
        assert name in latency.__all__ and hasattr(latency, name)
