"""Hostile inputs of the rank study (``tools/rank_study.py``): each ends
with one line ``error: ...`` and exit code 2, no traceback, and leaves
every file of the work dirs, the configs and the data as it was (checked
by sha256); damaged plans and records, configs edited under a study, work
dirs holding another study's results and sizes past their bounds
included."""
import json
import os
import os.path as osp
import re
import resource
import shutil
import subprocess
import sys
import textwrap

import pytest

from e3d_plugin.study import RankStudy, append_result
from tests.helpers import ROOT, checksums, load_tool, stand_in_train_config

SEARCH_XS = osp.join(ROOT, 'configs', 'search_e3d_xs.py')
TRAIN_XS = osp.join(ROOT, 'configs', 'e3d',
                    'e3d_xs_8x4x1_synthetic-motion.py')
#: Address space of the size cases' process (see test_hostile_inputs).
MEMORY_LIMIT = 4 << 30
#: A stand-in trainer without imports: the run's seed and the size of its
#: structure file make its accuracy; mmengine's scalars layout.
FAKE_TRAINER = r'''
import json, os, re, sys
text = open(sys.argv[1]).read()
seed = int(re.search(r'seed=(\d+)', text).group(1))
size = os.path.getsize(re.search(r"structure_file='([^']+)'", text).group(1))
work = sys.argv[sys.argv.index('--work-dir') + 1]
folder = os.path.join(work, '20250101_000000', 'vis_data')
os.makedirs(folder, exist_ok=True)
with open(os.path.join(folder, 'scalars.json'), 'w') as f:
    for epoch, acc in ((1, 0.1), (2, (size % 97) / 100 + seed / 1000)):
        f.write(json.dumps({'acc/top1': acc, 'step': epoch}) + '\n')
'''


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


def record(arch, seed, final):
    return dict(arch=arch, seed=seed, status='done', final=final,
                best=final, curve=[0.1, final], epochs=[1, 2],
                elapsed_s=1.0, returncode=0)


@pytest.fixture(scope='module')
def study_files(tmp_path_factory):
    """A training config with (empty) data on disk, the stand-in trainer,
    a finished study (plan made by the study, results written as its runs
    would write them, a report), a planned study without results, and
    folders and files the cases point at."""
    root = tmp_path_factory.mktemp('rank_inputs')
    train = stand_in_train_config(root, TRAIN_XS)
    search = write(root / 'search.py', f'''
        _base_ = [{SEARCH_XS!r}]
        ''')
    (root / 'fake_train.py').write_text(FAKE_TRAINER)
    devnull = open(os.devnull, 'w')
    for name in ('done', 'planned'):
        study = RankStudy(search, train, str(root / name), num_archs=4,
                          seeds=2, num_candidates=2000, n_resamples=50,
                          stream=devnull)
        study.prepare()
        if name == 'done':
            for seed in (0, 1):
                for index, arch in enumerate(study.plan['archs']):
                    append_result(study.results_path, record(
                        arch['id'], seed, 0.3 + index / 10 + seed / 100))
            study.report()
    (root / 'afile').write_text('x')
    (root / 'adir').mkdir()
    return root


def base_argv(work_dir, extra=()):
    return ['search.py', '--train-config', 'train.py', '--work-dir',
            work_dir, '--num-candidates', '2000', '--num-archs', '4',
            '--seeds', '2'] + list(extra)


def run_tool(root, argv, capfd):
    """``main(argv)`` of the rank study in ``root``: (code, stderr lines)."""
    old = os.getcwd()
    os.chdir(root)
    try:
        code = load_tool('rank_study').main(argv, train_command=[
            sys.executable, str(root / 'fake_train.py')])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    finally:
        os.chdir(old)
    captured = capfd.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


def assert_one_line(code, lines, message):
    """One line ``error: `` + ``message`` (the start of the line, or a
    compiled pattern it matches) and exit code 2."""
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert 'Traceback' not in lines[0]
    if isinstance(message, re.Pattern):
        assert message.match(lines[0][len('error: '):]), lines[0]
    else:
        assert lines[0].startswith('error: ' + message), lines[0]


# ----------------------------------------------------------------------
# damaged plans: refused with --report-only and --resume alike
def _plan(change):
    def apply(path):
        with open(path) as f:
            plan = json.load(f)
        plan = change(plan)
        with open(path, 'w') as f:
            f.write(plan if isinstance(plan, str) else json.dumps(plan))
    return apply


def _arch(change):
    def apply(plan):
        change(plan['archs'][0])
        return plan
    return apply


def _set(key, value):
    return _plan(lambda plan: dict(plan, **{key: value}))


PLAN_CASES = [
    ('a list', _plan(lambda p: [p]), 'a plan is a JSON object, got list'),
    ('empty', _plan(lambda p: ''), 'Expecting value'),
    ('binary', _plan(lambda p: '\x00\x01garbage'), 'Expecting value'),
    ('of another tool', _set('format', 'e3d-search-trials'),
     'not a rank study plan of this version'),
    ('of another version', _set('version', 2),
     'not a rank study plan of this version'),
    ('without archs', _plan(lambda p: {k: v for k, v in p.items()
                                       if k != 'archs'}),
     'archs must be a list of at least 3 architectures'),
    ('archs a dict', _set('archs', {'a00': 1}),
     'archs must be a list of at least 3'),
    ('archs a string', _set('archs', 'a00'),
     'archs must be a list of at least 3'),
    ('archs empty', _set('archs', []), 'archs must be a list of at least 3'),
    ('archs numbers', _set('archs', [1, 2, 3, 4]),
     r'archs\[0\] must be an object'),
    ('fewer archs than planned', _plan(lambda p: dict(
        p, archs=p['archs'][:3])), 'archs holds 3 architectures, the '
     'settings 4'),
    ('an arch without structure', _plan(_arch(lambda a: a.pop(
        'structure'))), r'archs\[0\].structure: a structure is a list'),
    ('a structure that is text', _plan(_arch(lambda a: a.update(
        structure='x'))), r'archs\[0\].structure: a structure is a list'),
    ('a block with a negative kernel', _plan(_arch(
        lambda a: a['structure'][1].update(k=-3))),
     r"archs\[0\].structure: block 1 .*field 'k'"),
    ('an arch without proxies', _plan(_arch(lambda a: a.pop('proxies'))),
     'an architecture lacks the proxy stentr_score'),
    ('proxies a list', _plan(_arch(lambda a: a.update(proxies=[1]))),
     r'archs\[0\].proxies must map names to numbers'),
    ('a proxy that is text', _plan(_arch(
        lambda a: a['proxies'].update(flops='big'))),
     r'archs\[0\].proxies must map names to numbers'),
    ('proxy_ms text', _plan(_arch(lambda a: a.update(proxy_ms={'x': 'y'}))),
     r'archs\[0\].proxy_ms must map names to numbers'),
    ('an arch without id', _plan(_arch(lambda a: a.pop('id'))),
     r'archs\[0\].id must be a name'),
    ('an id that is a number', _plan(_arch(lambda a: a.update(id=5))),
     r'archs\[0\].id must be a name'),
    ('a repeated id', _plan(lambda p: (p['archs'][1].update(
        id=p['archs'][0]['id']), p)[1]), r"archs\[1\].id 'a00' is repeated"),
    ('in_band text', _plan(_arch(lambda a: a.update(in_band='yes'))),
     r'archs\[0\].in_band must be true or false'),
    ('role a number', _plan(_arch(lambda a: a.update(role=1))),
     r'archs\[0\].role must be a word'),
    ('settings a list', _set('settings', [1]), 'settings must be an object'),
    ('seeds text', _plan(lambda p: (p['settings'].update(seeds='2'), p)[1]),
     "settings.seeds must be an integer >= 1, got '2'"),
    ('image_size text', _set('image_size', 'big'),
     "image_size must be a positive integer or two, got 'big'"),
    ('frames negative', _set('frames', -1),
     'frames must be a positive integer, got -1'),
    ('band_flops text', _set('band_flops', 'x'),
     "band_flops must be a number, got 'x'"),
    ('notes a number', _set('notes', 5), 'notes must be a list of lines'),
    ('budgets a list', _set('budgets', [1]), 'budgets must be an object'),
]


@pytest.mark.parametrize('mode', ['--report-only', '--resume'])
@pytest.mark.parametrize('name,damage,reason', PLAN_CASES,
                         ids=[case[0] for case in PLAN_CASES])
def test_a_damaged_plan_is_refused(study_files, capfd, tmp_path, mode, name,
                                   damage, reason):
    work = tmp_path / 'study'
    shutil.copytree(study_files / 'done', work)
    damage(str(work / 'study_plan.json'))
    before = checksums(tmp_path), checksums(study_files)
    code, lines, _ = run_tool(study_files, base_argv(str(work), [mode]),
                              capfd)
    assert_one_line(code, lines, re.compile(re.escape(
        f'{work}/study_plan.json is not a usable rank study plan (') +
        reason))
    assert lines[0].endswith('; restore it or choose another --work-dir')
    assert (checksums(tmp_path), checksums(study_files)) == before


def test_a_plan_that_is_a_folder_is_refused(study_files, capfd, tmp_path):
    work = tmp_path / 'study'
    shutil.copytree(study_files / 'done', work)
    os.remove(work / 'study_plan.json')
    (work / 'study_plan.json').mkdir()
    before = checksums(tmp_path)
    code, lines, _ = run_tool(study_files, base_argv(
        str(work), ['--report-only']), capfd)
    assert_one_line(code, lines, (
        f'{work}/study_plan.json is not a regular file; choose another '
        '--work-dir'))
    assert checksums(tmp_path) == before


# ----------------------------------------------------------------------
# damaged results: a record that cannot be used is skipped with a note
# (its run counts as not finished); no finished run at all: refused, and
# the report that is there stays
def _records(change):
    def apply(path):
        with open(path) as f:
            records = [json.loads(line) for line in f]
        text = change(records)
        with open(path, 'w') as f:
            f.write(text if isinstance(text, str) else ''.join(
                json.dumps(r) + '\n' for r in text))
    return apply


def _first(change):
    def apply(records):
        change(records[0])
        return records
    return _records(apply)


def _text(old, new):
    return _records(lambda records: ''.join(
        json.dumps(r) + '\n' for r in records).replace(old, new, 1))


RECORD_CASES = [
    ('without final', _first(lambda r: r.pop('final')),
     'its final is None, not a finite number'),
    ('final text', _first(lambda r: r.update(final='high')),
     "its final is 'high', not a finite number"),
    ('final NaN', _text('"final": 0.3', '"final": NaN, "x": 0.3'),
     'its final is nan, not a finite number'),
    ('final Infinity', _text('"final": 0.3', '"final": Infinity, "x": 0.3'),
     'its final is inf, not a finite number'),
    ('best text', _first(lambda r: r.update(best='x')),
     "its best is 'x', not a finite number"),
    ('curve text', _first(lambda r: r.update(curve='abc')),
     "its curve is 'abc', not a list of finite numbers"),
    ('curve nested', _first(lambda r: r.update(curve=[[1], {'a': 2}])),
     'its curve is .*, not a list of finite numbers'),
    ('arch a list', _first(lambda r: r.update(arch=['a00'])),
     r"its arch is \['a00'\], not a name or a number"),
    ('seed a fraction', _first(lambda r: r.update(seed=0.5)),
     'its seed is 0.5, not a name or a number'),
    ('status a number', _first(lambda r: r.update(status=1)),
     'its status is 1, not a word'),
]


@pytest.mark.parametrize('name,damage,note', RECORD_CASES,
                         ids=[case[0] for case in RECORD_CASES])
def test_a_damaged_record_is_skipped_with_a_note(study_files, capfd,
                                                 tmp_path, name, damage,
                                                 note):
    work = tmp_path / 'study'
    shutil.copytree(study_files / 'done', work)
    damage(str(work / 'results.jsonl'))
    results = checksums(work)['results.jsonl']
    code, lines, out = run_tool(study_files, base_argv(
        str(work), ['--report-only']), capfd)
    assert code == 0, lines
    assert not any('Traceback' in line for line in lines)
    assert any(re.match(re.escape(f'note: {work}/results.jsonl: record 1 '
                                  'skipped: ') + note, line)
               for line in lines), lines
    assert checksums(work)['results.jsonl'] == results
    with open(work / 'rank_study.json') as f:
        assert json.load(f)['runs_done'] == 7
    assert '7/8 runs' in out


@pytest.mark.parametrize('name,text', [
    ('empty', ''),
    ('binary', '\xff\xfe\x00\n'),
    ('only failed runs', json.dumps(dict(arch='a00', seed=0,
                                         status='failed', reason='x')) + '\n'),
    ('only unusable records', json.dumps(dict(arch='a00', seed=0,
                                              status='done')) + '\n'),
])
def test_no_finished_run_keeps_the_report(study_files, capfd, tmp_path, name,
                                          text):
    work = tmp_path / 'study'
    shutil.copytree(study_files / 'done', work)
    with open(work / 'results.jsonl', 'w', errors='surrogateescape') as f:
        f.write(text)
    before = checksums(tmp_path)
    code, lines, _ = run_tool(study_files, base_argv(
        str(work), ['--report-only']), capfd)
    assert code == 2
    assert lines[-1] == (
        f'error: no run of the study in {work} has a result yet '
        '(results.jsonl holds no finished run); nothing to report, the '
        'report there is kept')
    assert all(line.startswith('note: ') for line in lines[:-1])
    assert checksums(tmp_path) == before


def test_results_that_are_a_folder_are_refused(study_files, capfd,
                                               tmp_path):
    work = tmp_path / 'study'
    shutil.copytree(study_files / 'done', work)
    os.remove(work / 'results.jsonl')
    (work / 'results.jsonl').mkdir()
    before = checksums(tmp_path)
    code, lines, _ = run_tool(study_files, base_argv(
        str(work), ['--report-only']), capfd)
    assert_one_line(code, lines, (
        f'{work}/results.jsonl is not a regular file; the results of a '
        'study are a file: choose another --work-dir'))
    assert checksums(tmp_path) == before


def test_a_skipped_record_is_trained_again_on_resume(study_files, capfd,
                                                     tmp_path):
    work = tmp_path / 'study'
    shutil.copytree(study_files / 'done', work)
    _first(lambda r: r.update(final='high'))(str(work / 'results.jsonl'))
    with open(work / 'results.jsonl') as f:
        damaged = f.read()
    code, lines, out = run_tool(study_files, base_argv(
        str(work), ['--resume', '--jobs', '1']), capfd)
    assert code == 0, lines
    assert 'resuming: 7/8 runs finished, 1 to train' in lines
    with open(work / 'results.jsonl') as f:
        text = f.read()
    assert text.startswith(damaged)  # nothing lost, one record added
    added = [json.loads(line) for line in text[len(damaged):].splitlines()]
    assert [(r['arch'], r['seed'], r['status']) for r in added] == [
        ('a00', 0, 'done')]
    assert '8/8 runs' in out


# ----------------------------------------------------------------------
# a study that would mix what it should not
@pytest.mark.parametrize('name', ['results.jsonl', 'runs',
                                  'trials_plan.json'])
def test_a_new_study_refuses_a_work_dir_with_foreign_results(
        study_files, capfd, tmp_path, name):
    work = tmp_path / 'foreign'
    work.mkdir()
    source = study_files / 'done' / name
    if name == 'runs':
        (work / name).mkdir()
    elif name == 'trials_plan.json':
        (work / name).write_text('{}')
    else:
        shutil.copy(source, work / name)
    before = checksums(tmp_path)
    code, lines, _ = run_tool(study_files, base_argv(str(work)), capfd)
    assert_one_line(code, lines, (
        f'work dir {work} holds {name} but no study_plan.json: the results '
        'of another study (or of a damaged one) that a new study must not '
        'mix with its own; choose another --work-dir'))
    assert checksums(tmp_path) == before


def edited_configs(study_files, tmp_path):
    """A copy of the finished study whose plan names copies of the
    configs (so that the cases can edit them)."""
    work = tmp_path / 'study'
    shutil.copytree(study_files / 'done', work)
    for name in ('train.py', 'search.py'):
        shutil.copy(study_files / name, tmp_path / name)
    with open(work / 'study_plan.json') as f:
        plan = json.load(f)
    plan['settings']['train_config'] = str(tmp_path / 'train.py')
    plan['settings']['search_config'] = str(tmp_path / 'search.py')
    with open(work / 'study_plan.json', 'w') as f:
        json.dump(plan, f)
    return work


@pytest.mark.parametrize('name,line,what', [
    ('train.py', 'train_cfg = dict(max_epochs=3)\n', 'training config'),
    ('search.py', 'search = dict(budgets=dict(flops=3.9e7))\n',
     'search config'),
])
def test_resume_refuses_a_config_edited_in_place(study_files, capfd,
                                                 tmp_path, name, line,
                                                 what):
    work = edited_configs(study_files, tmp_path)
    argv = ['search.py', '--train-config', 'train.py', '--work-dir',
            str(work), '--num-candidates', '2000', '--num-archs', '4',
            '--seeds', '2']
    with open(tmp_path / name, 'a') as f:
        f.write(line)
    before = checksums(tmp_path)
    code, lines, _ = run_tool(tmp_path, argv + ['--resume'], capfd)
    assert_one_line(code, lines, re.compile(re.escape(
        f'work dir {work} holds a rank study made with another content of '
        f'the {what} (sha256 ') + r'[0-9a-f]{12}, now [0-9a-f]{12}' +
        re.escape(': edited since); restore it or choose another '
                  '--work-dir')))
    assert checksums(tmp_path) == before
    # a report reads what is there, and says the config changed
    code, lines, out = run_tool(tmp_path, argv + ['--report-only'], capfd)
    assert code == 0, lines
    assert (f'note: the {what} does not load as it did for the plan '
            '(edited or missing since); the report shows the results of '
            'the plan') in out.splitlines()


def test_a_plan_without_digests_still_resumes(study_files, capfd, tmp_path):
    """Plans written before the configs' digests resume as before, with a
    note that edits cannot be detected."""
    work = tmp_path / 'study'
    shutil.copytree(study_files / 'done', work)
    with open(work / 'study_plan.json') as f:
        plan = json.load(f)
    assert len(plan['settings']['train_config_sha256']) == 64
    for key in ('train_config_sha256', 'search_config_sha256'):
        del plan['settings'][key]
    with open(work / 'study_plan.json', 'w') as f:
        json.dump(plan, f)
    results = checksums(work)['results.jsonl']
    code, lines, out = run_tool(study_files, base_argv(
        str(work), ['--resume']), capfd)
    assert code == 0, lines
    assert ('note: the plan predates config digests: an edit of the configs '
            'since it was made cannot be detected') in lines
    assert 'resuming: 8/8 runs finished, 0 to train' in lines
    assert checksums(work)['results.jsonl'] == results


def test_report_only_of_a_planned_study_without_results(study_files, capfd):
    before = checksums(study_files)
    code, lines, _ = run_tool(study_files, base_argv(
        'planned', ['--report-only']), capfd)
    assert_one_line(code, lines, (
        'no run of the study in planned has a result yet (results.jsonl '
        'holds no finished run); nothing to report'))
    assert checksums(study_files) == before


# ----------------------------------------------------------------------
# arguments: refused before anything is written or trained
NO_SRUN = ['--launcher', 'slurm', '--partition', 'p']
ARGUMENT_CASES = [
    # work dirs
    (['--work-dir', 'afile'], "--work-dir 'afile' is a file, not a folder; "
     'choose another folder'),
    (['--work-dir', 'afile/sub'], "--work-dir 'afile/sub' cannot be "
     "created: '{root}/afile' is a file, not a folder"),
    (['--work-dir', ''], '--work-dir must not be empty'),
    (['--work-dir', 'a\nb'], "--work-dir 'a\\nb' holds a control "
     'character; choose a plain name'),
    (['--work-dir', 'x' * 300], re.compile(
        "--work-dir 'x+[.]*'?: a name is longer than 255 bytes; choose a "
        'shorter one')),
    # configs
    (['--train-config', 'adir'], "--train-config: config 'adir' is a "
     'directory; give a config file (.py) in it'),
    (['--train-config', ''], "--train-config: the config must be a file "
     "path, got ''"),
    (['--train-config', 'search.py'], '--train-config search.py: '
     "model.backbone.type is None, not 'E3D'"),
    (['--cfg-options', 'score=5'], "the search config's score must be a "
     'dict (a config with a type), got 5'),
    (['--cfg-options', 'search=5'], "the search config's search must be a "
     'dict (a config with a type), got 5'),
    (['--cfg-options', 'search.budgets=5'], "the search config's "
     'search.budgets must be a dict such as dict(flops=4e7), got 5'),
    (['--cfg-options', 'space=5'], 'search.py: space must be a dict'),
    (['--cfg-options', 'search.budgets.flops=nan'], 'search.py: '
     'search.budgets: budget flops must be a positive, finite number'),
    # training settings: checked before the first run
    (['--train-cfg-options', 'train_cfg.max_epochs=0'], '--train-config '
     'train.py: train_cfg.max_epochs must be an integer >= 1, got 0; every '
     'run must train and validate'),
    (['--train-cfg-options', 'train_cfg.val_begin=100'], '--train-config '
     'train.py: train_cfg.val_begin 100 is after the last of max_epochs 12: '
     'no run would validate; lower val_begin'),
    (['--train-cfg-options', 'foo'], "--train-cfg-options: 'foo' is not "
     'KEY=VALUE'),
    (['--train-cfg-options', 'train_cfg.max_epochs.x=1'],
     '--train-cfg-options train_cfg.max_epochs.x: train_cfg.max_epochs is '
     '12 (int), not a dict'),
    (['--metric', 'acc/top7'], "--metric 'acc/top7': the validation of "
     '--train-config train.py logs acc/top1, acc/top5, acc/mean1; choose '
     'one of them'),
    (['--metric', ''], "--metric must name a validation metric (e.g. "
     "acc/top1), got ''"),
    # numbers
    (['--num-candidates', '0'], '--num-candidates must be an integer in '
     '1..200000, got 0'),
    (['--num-candidates', '-5'], '--num-candidates must be an integer in '
     '1..200000, got -5'),
    (['--seed', '-1'], '--seed must be an integer in 0..2**63-1, got -1'),
    (['--seed', str(2**70)], '--seed must be an integer in 0..2**63-1'),
    (['--first-seed', str(2**40)], '--first-seed must be an integer in '
     '0..2**31-1'),
    (['--band-share', 'nan'], '--band-share must be a number in (0, 1], '
     'got nan'),
    (['--final-epochs', '0'], '--final-epochs must be an integer in '
     '1..2**31-1, got 0'),
    (['--proxies', ''], "--proxies: unknown proxy ''"),
    # where runs go
    (NO_SRUN, '--launcher slurm: no srun command on PATH; run the study on '
     'a slurm login node (or use --launcher local)'),
    (NO_SRUN + ['--srun-args', '"unclosed'], "--srun-args '\"unclosed': No "
     'closing quotation'),
]


@pytest.mark.parametrize('extra,message', ARGUMENT_CASES,
                         ids=[' '.join(c[0])[:40].replace('\n', ' ') for c in ARGUMENT_CASES])
def test_bad_arguments_one_line_nothing_written(study_files, capfd, extra,
                                                message):
    argv = base_argv('new') + extra
    if '--work-dir' in extra:  # the case's own
        index = argv.index('--work-dir')
        del argv[index:index + 2]
    before = checksums(study_files)
    code, lines, _ = run_tool(study_files, argv, capfd)
    if isinstance(message, str):
        message = message.format(root=study_files)
    assert_one_line(code, lines, message)
    assert checksums(study_files) == before


# ----------------------------------------------------------------------
# sizes: one line within seconds, under a memory limit
DRIVER = '''
import json, sys, time
sys.path.insert(0, {root!r})
from tests.helpers import load_tool
tool = load_tool('rank_study')
results = []
for argv in json.loads(sys.argv[1]):
    start = time.time()
    try:
        code = tool.main(argv)
    except SystemExit as e:
        code = e.code
    results.append((code, time.time() - start))
print(json.dumps(results))
'''
SIZE_CASES = [
    (['--num-archs', '100000'], '--num-archs 100000 is more than a study '
     'trains (at most 1000'),
    (['--num-archs', str(10**12)], '--num-archs 1000000000000 is more than'),
    (['--seeds', str(10**8)], '--seeds 100000000 is more than a study trains '
     '(at most 100); lower --seeds'),
    (['--num-candidates', str(10**12)], '--num-candidates must be an '
     'integer in 1..200000, got 1000000000000'),
    (['--jobs', str(10**9)], '--jobs 1000000000 is more than this queue '
     'starts'),
]


def test_sizes_refused_within_seconds_under_a_memory_limit(study_files):
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    before = checksums(study_files)
    argvs = []
    for extra, _ in SIZE_CASES:
        argv = base_argv('new')
        for flag, value in zip(extra[::2], extra[1::2]):
            if flag in argv:
                argv[argv.index(flag) + 1] = value
            else:
                argv += [flag, value]
        argvs.append(argv)
    proc = subprocess.run(
        [sys.executable, '-c', DRIVER.format(root=ROOT), json.dumps(argvs)],
        cwd=study_files, capture_output=True, text=True, timeout=300,
        preexec_fn=cap)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == len(SIZE_CASES), errors
    for (extra, message), (code, seconds), line in zip(SIZE_CASES, results,
                                                       errors):
        assert code == 2, (extra, line)
        assert line.startswith('error: ' + message), line
        assert seconds < 5, (extra, seconds)
    assert checksums(study_files) == before
