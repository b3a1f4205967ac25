"""tools/search.py with bad inputs: one line ``error: ...``, exit code 2,
no traceback, nothing lost."""
import json
import os.path as osp

import pytest

from tests.helpers import ROOT, load_search_tool

XS = osp.join(ROOT, 'configs', 'search_e3d_xs.py')

# --cfg-options -> the expected error line (its start, after 'error: ')
OPTION_CASES = [
    # a number where a dict or a list belongs
    ('search.budgets=5', 'search.budgets must be a dict, e.g. dict(flops=5e9, '
     'layers=83), got 5'),
    ('space=3', 'space must be a dict (a config with a type), got 3'),
    ('score=3', 'score must be a dict (a config with a type), got 3'),
    ('search=3', 'search must be a dict (a config with a type), got 3'),
    ('score.stage_weights=7', 'score.stage_weights must be a list, got 7'),
    ('space.kernels=3', 'space.kernels must be a list, got 3'),
    ('space.kinds=dwbtn', "space.kinds must be a list, got 'dwbtn'"),
    ('search.latency=5', 'search.latency must be a dict (a LatencyTable '
     'config) or a predictor, got 5'),
    ('init_structure=5', 'init_structure must be a preset name, a structure '
     'file or a list of block dicts, got 5'),
    ('train_base=5', 'train_base must be a config path, got 5'),
    # a string where a number belongs
    ('search.population_size=abc', "search.population_size must be an "
     "integer >= 1, got 'abc'"),
    ('search.budgets.latency=abc', 'search.budgets: budget latency must be a '
     "positive, finite number, got 'abc'"),
    ('search.image_size=abc', 'search.image_size must be a positive integer '
     "or a (height, width) pair of them, got 'abc'"),
    ('score.image_size=abc', "score.image_size must be a finite number, got "
     "'abc'"),
    ('space.frames=abc', "space.frames must be a finite number, got 'abc'"),
    ('space.max_depth=abc', 'space: E3DSearchSpace: max_depth must be'),
    # NaN, infinity, out of range
    ('search.budgets.flops=nan', 'search.budgets: budget flops must be a '
     'positive, finite number, got nan'),
    ('search.budgets.flops=inf', 'search.budgets: budget flops must be a '
     'positive, finite number, got inf'),
    ('search.budgets.layers=-1', 'search.budgets: budget layers must be a '
     'positive, finite number, got -1'),
    ('search.crossover_prob=nan', 'search.crossover_prob must be a number in '
     '[0, 1], got nan'),
    ('search.crossover_prob=2', 'search.crossover_prob must be a number in '
     '[0, 1], got 2'),
    ('score.frames=nan', 'score.frames must be a finite number, got nan'),
    ('search.frames=0', 'search.frames must be a positive integer, got 0'),
    # booleans and floats where an integer belongs
    ('search.num_candidates=1.5', 'search.num_candidates must be an integer '
     '>= 0, got 1.5'),
    ('search.seed=True', 'search.seed must be an integer, got True'),
    ('search.top_k=True', 'search.top_k must be an integer >= 1, got True'),
    ('search.log_interval=0', 'search.log_interval must be an integer >= 1, '
     'got 0'),
    # unknown names
    ('search.foo=1', "EntropyEvolution.__init__() got an unexpected keyword "
     "argument 'foo'"),
    ('score.foo=1', "score: STEntrScore.__init__() got an unexpected keyword "
     "argument 'foo'"),
    ('score.type=Nope', "unknown score type 'Nope'; registered: FlopsScore, "
     'GradNormScore, LayersScore, NASWOTScore, ParamsScore, RandomScore, '
     'STEntrScore, SynFlowScore, ZenScore, ZiCoScore'),
    ('search.budgets.gflops=5', "unknown budget 'gflops'; budgets are flops, "
     'params, layers, latency, max_feature, activation_bytes'),
    # the memory budgets: negative, NaN, a string, zero
    ('search.budgets.max_feature=-1', 'search.budgets: budget max_feature '
     'must be a positive, finite number, got -1'),
    ('search.budgets.max_feature=nan', 'search.budgets: budget max_feature '
     'must be a positive, finite number, got nan'),
    ('search.budgets.activation_bytes=abc', 'search.budgets: budget '
     "activation_bytes must be a positive, finite number, got 'abc'"),
    ('search.budgets.activation_bytes=0', 'search.budgets: budget '
     'activation_bytes must be a positive, finite number, got 0'),
    ('search.budgets.activation_bytes=-5e8', 'search.budgets: budget '
     'activation_bytes must be a positive, finite number, got -500000000.0'),
    ('search.budgets.max_feature=True', 'search.budgets: budget max_feature '
     'must be a positive, finite number, got True'),
    ('init_structure=Nope', "init_structure: 'Nope' is neither a preset"),
    ('train_base=nope.py', 'train_base: no mmaction2 config at'),
    # malformed --cfg-options
    ('search.budgets', "--cfg-options: 'search.budgets' is not KEY=VALUE"),
    ('=3', "--cfg-options: empty key in ''=...; write KEY=VALUE"),
    ('search.budgets=[1,2', "--cfg-options search.budgets: cannot read the "
     "value '[1,2' (']' is missing)"),
    ('search.budgets.flops.x=1', '--cfg-options search.budgets.flops.x: '
     'search.budgets.flops is 40000000.0 (float), not a dict'),
    ('a=f(1,2)', "--cfg-options: the config has no key 'a'; its keys are "),
    ('serch.num_candidates=10', "--cfg-options: the config has no key "
     "'serch'"),
    ('a..b=1', '--cfg-options: '),
]


def _run(args, capsys):
    tool = load_search_tool()
    try:
        code = tool.main(args)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith('error: ')]
    assert not any('Traceback' in line for line in err)
    return code, errors


@pytest.mark.parametrize('option,message', OPTION_CASES)
def test_bad_cfg_options(tmp_path, capsys, option, message):
    work_dir = tmp_path / 'w'
    code, errors = _run([XS, '--work-dir', str(work_dir), '--no-progress',
                         '--cfg-options', option], capsys)
    assert code == 2
    assert len(errors) == 1, errors
    assert errors[0].startswith('error: ' + message), errors[0]
    assert not work_dir.exists()  # failed before touching the work dir


@pytest.mark.parametrize('text,message', [
    ('search = dict(\n', "has a syntax error at line 1: '(' was never "
     'closed'),
    ("_base_ = ['./search_e3d_xs.py']\nscore = dict(refine='false')\n",
     "score.refine must be True or False (a boolean, not a string: write it "
     "without quotes), got 'false'"),
    ("_base_ = ['./search_e3d_xs.py']\nsearch = dict(budgets=dict(flops="
     "float('nan')))\n", 'search.budgets: budget flops must be a positive, '
     'finite number, got nan'),
    ("_base_ = ['./search_e3d_xs.py']\nsearch = dict(population_size='64')\n",
     "search.population_size must be an integer >= 1, got '64'"),
    ("_base_ = ['./search_e3d_xs.py']\nspace = dict(max_width=None)\n",
     'space.max_width must be a finite number, got None'),
    ("_base_ = ['./search_e3d_xs.py']\nsearch = None\n",
     "is missing the required key 'search'"),
    ("family = dict(X=3)\n", "family member 'X' must be a config path, got 3"),
])
def test_bad_config_files(tmp_path, capsys, text, message):
    config = str(tmp_path / 'bad.py')
    train_base = osp.join(ROOT, 'configs', 'e3d',
                          'e3d_xs_8x4x1_synthetic-motion.py')
    with open(config, 'w') as f:
        f.write(text.replace("'./search_e3d_xs.py'", repr(XS)))
        if '_base_' in text:
            f.write(f'train_base = {train_base!r}\n')
    code, errors = _run([config, '--work-dir', str(tmp_path / 'w'),
                         '--no-progress'], capsys)
    assert code == 2
    assert len(errors) == 1 and message in errors[0], errors


@pytest.mark.parametrize('args,message', [
    (['--seed', 'x'], "argument --seed: invalid int value: 'x'"),
    (['--cfg-options'], 'argument --cfg-options: expected at least one'),
    (['--bogus'], 'unrecognized arguments: --bogus'),
])
def test_bad_arguments(tmp_path, capsys, args, message):
    code, errors = _run([XS, '--work-dir', str(tmp_path), *args], capsys)
    assert code == 2
    assert len(errors) == 1 and message in errors[0], errors


def test_missing_config_and_work_dir_under_a_file(tmp_path, capsys):
    code, errors = _run([str(tmp_path / 'none.py')], capsys)
    assert code == 2 and errors == [
        f"error: config file '{tmp_path / 'none.py'}' does not exist"]
    afile = tmp_path / 'afile'
    afile.write_text('x')
    code, errors = _run([XS, '--work-dir', str(afile / 'sub'),
                         '--no-progress'], capsys)
    assert code == 2 and errors == [
        f'error: work dir {afile / "sub"} cannot be created (Not a '
        'directory); choose another --work-dir']
    assert afile.read_text() == 'x'


def test_boolean_options_mean_what_they_say(tmp_path, capsys):
    """``refine=false`` on the command line is False (mmengine's DictAction
    reads it as a boolean), never a truthy string."""
    tool = load_search_tool()
    for value, expected in (('false', False), ('False', False),
                            ('true', True)):
        work_dir = tmp_path / value
        assert tool.main([XS, '--work-dir', str(work_dir), '--no-progress',
                          '--cfg-options', f'score.refine={value}',
                          'search.num_candidates=200',
                          'search.checkpoint_interval=200']) == 0
        payload = json.load(open(work_dir / 'search_checkpoint.json'))[
            'payload']
        assert payload['settings']['score']['refine'] is expected


def test_failing_rerun_keeps_the_log_and_the_checkpoint(tmp_path, capsys):
    tool = load_search_tool()
    work_dir = tmp_path / 'w'
    base = [XS, '--work-dir', str(work_dir), '--no-progress']
    assert tool.main(base + ['--cfg-options', 'search.num_candidates=300',
                             'search.checkpoint_interval=100']) == 0
    log = (work_dir / 'search.log').read_text()
    assert 'best STEntr-Score' in log
    files = {p.name: p.read_bytes() for p in work_dir.iterdir()}
    # fails in the config checks, in the search, and on resume
    for options in (['search.budgets=5'],
                    ['search.budgets.flops=1000'],
                    ['search.num_candidates=301', '--resume']):
        args = base + ['--cfg-options', *options]
        if '--resume' in options:
            args = base + ['--resume', '--cfg-options', options[0],
                           'search.checkpoint_interval=100']
        code, errors = _run(args, capsys)
        assert code == 2 and len(errors) == 1
    assert (work_dir / 'search.log').read_text().startswith(log)
    for name, content in files.items():
        if name != 'search.log':
            assert (work_dir / name).read_bytes() == content, name


def test_new_search_over_an_unfinished_one_refused(tmp_path, capsys,
                                                   monkeypatch):
    from e3d_plugin.nas import EntropyEvolution
    from tests.helpers import Killed
    tool = load_search_tool()
    work_dir = tmp_path / 'w'
    args = [XS, '--work-dir', str(work_dir), '--no-progress',
            '--cfg-options', 'search.num_candidates=300',
            'search.checkpoint_interval=100']
    original = EntropyEvolution.checkpoint

    def checkpoint_then_die(self, state, elapsed_s):
        original(self, state, elapsed_s)
        raise Killed()

    monkeypatch.setattr(EntropyEvolution, 'checkpoint', checkpoint_then_die)
    with pytest.raises(Killed):
        tool.main(args)
    monkeypatch.setattr(EntropyEvolution, 'checkpoint', original)
    checkpoint = (work_dir / 'search_checkpoint.json').read_bytes()
    code, errors = _run(args, capsys)
    assert code == 2 and errors == [
        f'error: work dir {work_dir} holds an unfinished search (100/300 '
        'candidates); continue it with --resume, or choose another work dir '
        '(or delete search_checkpoint.json to start over)']
    assert (work_dir / 'search_checkpoint.json').read_bytes() == checkpoint
    assert tool.main(args[:4] + ['--resume'] + args[4:]) == 0
    summary = json.load(open(work_dir / 'search_summary.json'))
    assert summary['num_evaluated'] == 300
