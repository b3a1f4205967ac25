"""Bad inputs of tools/train.py and tools/test.py (and the shared helpers of
e3d_plugin/launch.py): each ends with one line ``error: ...`` and exit code
2, before anything runs; good inputs still train, resume and test."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config, DictAction

from e3d_plugin.datasets.synthetic_motion import generate
from e3d_plugin.launch import (LaunchError, check_data, load_config,
                               parse_cfg_option)
from tests.helpers import ROOT, load_tool

XS = osp.join(ROOT, 'configs', 'e3d', 'e3d_xs_8x4x1_synthetic-motion.py')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A tiny generated dataset, a config training E3D-XS on it in one
    short epoch, and a checkpoint of that config's model (weights only) and
    one with a training state (for resume)."""
    root = tmp_path_factory.mktemp('tool_inputs')
    data = generate(str(root / 'data'), num_videos=20, size=32, frames=16,
                    seed=1)
    config = root / 'xs.py'
    loader = ("dict(batch_size=5, num_workers=0, persistent_workers=False, "
              "dataset=dict(ann_file='{ann}', "
              f"data_prefix=dict(video='{data['videos']}')))")
    config.write_text(
        f"_base_ = ['{XS}']\n"
        f"train_dataloader = {loader.format(ann=data['train_list'])}\n"
        f"val_dataloader = {loader.format(ann=data['val_list'])}\n"
        'test_dataloader = val_dataloader\n'
        'train_cfg = dict(max_epochs=1)\n'
        'default_hooks = dict(logger=dict(interval=1))\n'
        f"work_dir = '{root / 'work'}'\n")
    from mmaction.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmaction')
    cfg = Config.fromfile(str(config))
    model = MODELS.build(cfg.model)
    weights = str(root / 'weights.pth')
    torch.save({'state_dict': model.state_dict()}, weights)
    return dict(root=root, config=str(config), data=data, weights=weights,
                state_dict=model.state_dict())


def run_main(tool, argv, capsys):
    """``main(argv)`` of ``tools/<tool>.py``: (exit code, stderr)."""
    from mmengine.logging import MMLogger
    # Runners started in the same second share a logger name, and mmengine
    # would reuse the logger bound to an earlier test's captured stream.
    MMLogger._instance_dict.clear()
    code = load_tool(tool).main(argv)
    return code, capsys.readouterr().err


def assert_one_line(code, err, expected):
    assert code == 2
    assert err.count('\n') == 1, err
    assert err.startswith('error: '), err
    assert expected in err, err


# ------------------------------------------------------------ --cfg-options
@pytest.mark.parametrize('value', [
    '1', '-3', '1.5', '1e3', 'true', 'False', 'None', 'abc', 'a,b', '1,2,3',
    '[1,2]', '(1,2)', '(-1,64)', '[(1,2),[a,b],c]', '"(1, 2)"', '[]', '()',
    '1,', '(1)', '[[1,2],[3]]', 'x.py', 'inf', ''
])
def test_cfg_option_values_read_as_mmengine_reads_them(value):
    key, parsed = parse_cfg_option('k=' + value)
    expected = DictAction._parse_iterable(value)
    assert key == 'k'
    assert parsed == expected and type(parsed) is type(expected)


@pytest.mark.parametrize('item,line', [
    ('foo', "--cfg-options: 'foo' is not KEY=VALUE"),
    ('=3', '--cfg-options: empty key'),
    ('a..b=1', "--cfg-options: 'a..b' is not a config key"),
    ('.a=1', "--cfg-options: '.a' is not a config key"),
    ('a.=1', "--cfg-options: 'a.' is not a config key"),
    ('a b=1', "--cfg-options: 'a b' is not a config key"),
    ('a=[1,2', "--cfg-options a: cannot read the value '[1,2' (']' is "
     'missing)'),
    ('a=(1', "--cfg-options a: cannot read the value '(1' (')' is missing)"),
    ('a=1)', "--cfg-options a: cannot read the value '1)' (unbalanced ')')"),
    ('a=[(])', "--cfg-options a: cannot read the value '[(])' (unbalanced "
     "']')"),
    ('a=' + '[' * 40 + ']' * 40, "--cfg-options a: cannot read the value '"
     + '[' * 40 + ']' * 15 + "...' (brackets nest deeper than 32 levels)"),
    # mmengine's DictAction recurses endlessly on this one
    ('a=dict(type=Pretrained,checkpoint=x.pth)',
     '--cfg-options a: a dict(...) value is not read; set its keys one by '
     'one, e.g. a.type=...'),
])
def test_malformed_cfg_options_one_line(item, line, capsys):
    tool = load_tool('train')
    with pytest.raises(SystemExit) as exit_info:
        tool.parse_args(['config.py', '--cfg-options', item])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: {line}'), err
    assert err.count('\n') == 1


# --------------------------------------------------------------- configs
@pytest.fixture(scope='module')
def bad_configs(tmp_path_factory):
    root = tmp_path_factory.mktemp('configs')
    files = {
        'syntax.py': 'model = dict(\n',
        'name.py': 'x = undefined_name\n',
        'base.py': "_base_ = ['nope.py']\n",
        'import.py': "custom_imports = dict(imports=['no_such_module_x'])\n",
        'text.txt': 'x = 1\n',
        'bytes.py': b'\xff\xfe = 1\n',
    }
    for name, text in files.items():
        mode = 'wb' if isinstance(text, bytes) else 'w'
        with open(root / name, mode) as f:
            f.write(text)
    (root / 'dir.py').mkdir()
    return root


@pytest.mark.parametrize('name,line', [
    ('syntax.py', "has a syntax error at line 1: '(' was never closed"),
    ('name.py', "NameError: name 'undefined_name' is not defined"),
    ('base.py', 'FileNotFoundError'),
    ('import.py', 'Failed to import no_such_module_x'),
    ('text.txt', 'Only py/yml/yaml/json type are supported now!'),
    ('bytes.py', 'UnicodeDecodeError'),
    ('dir.py', "is a directory; give a config file (.py) in it"),
    ('missing.py', 'does not exist'),
])
def test_bad_config_files(bad_configs, name, line):
    path = str(bad_configs / name)
    with pytest.raises(LaunchError) as info:
        load_config(path)
    message = str(info.value)
    assert path in message and line in message, message
    assert '\n' not in message


@pytest.mark.parametrize('options,line', [
    ({'model.backbone': 5}, "model.backbone must be a dict with a 'type', "
     'got 5 (int)'),
    ({'train_dataloader': 3}, 'train_dataloader must be a dict with '
     'dataset, sampler, batch_size (or None), got 3 (int)'),
    ({'model': [1]}, "model must be a dict with a 'type', got [1] (list)"),
    ({'train_dataloader.batch_size': 'abc'},
     "train_dataloader.batch_size must be an integer >= 1, got 'abc'"),
    ({'train_dataloader.batch_size': True},
     'train_dataloader.batch_size must be an integer >= 1, got True'),
    ({'val_dataloader.num_workers': -1},
     'val_dataloader.num_workers must be an integer >= 0, got -1'),
    ({'train_dataloader.dataset.pipeline': 'abc'},
     "train_dataloader.dataset.pipeline must be a list of transform dicts, "
     "got 'abc' (str)"),
    ({'train_dataloader.dataset.pipeline.0': 5},
     '--cfg-options train_dataloader.dataset.pipeline.0: an item of the list '
     'train_dataloader.dataset.pipeline can only be changed key by key'),
    ({'train_dataloader.dataset.ann_file': 5},
     'train_dataloader.dataset.ann_file must be a path, got 5 (int)'),
    ({'train_dataloader.dataset.data_prefix': 'videos'},
     'train_dataloader.dataset.data_prefix must be a dict such as '
     "dict(video='data/videos'), got 'videos' (str)"),
    ({'optim_wrapper.optimizer.lr': 'abc'},
     "optim_wrapper.optimizer.lr must be a finite number >= 0, got 'abc'"),
    ({'optim_wrapper.optimizer.lr': float('nan')},
     'optim_wrapper.optimizer.lr must be a finite number >= 0, got nan'),
    ({'train_cfg.max_epochs': 'abc'},
     "train_cfg.max_epochs must be an integer >= 0, got 'abc'"),
    ({'randomness.seed': 'abc'},
     "randomness.seed must be an integer in [0, 2**32) or None, got 'abc'"),
    ({'randomness.deterministic': 'false'},
     "randomness.deterministic must be True or False, got 'false' (str)"),
    ({'work_dir': 5}, 'work_dir must be a str, got 5 (int)'),
    ({'model.cls_head.num_classes': 'abc'},
     "model.cls_head.num_classes must be an integer >= 1, got 'abc'"),
    ({'model.data_preprocessor.mean': 'abc'},
     'model.data_preprocessor.mean must be a list of finite numbers (one per '
     "channel), got 'abc'"),
    ({'resume': 'yes'}, "resume must be True or False, got 'yes' (str)"),
    ({'custom_hooks': [5]},
     "custom_hooks.0 must be a dict with a 'type', got 5 (int)"),
    ({'param_scheduler': 'cosine'},
     "param_scheduler must be a dict with a 'type', got 'cosine' (str)"),
    ({'default_hooks.logger': 'x'},
     "default_hooks.logger must be a dict with a 'type', got 'x' (str)"),
    ({'model.backbone.arch.x': 1},
     "--cfg-options model.backbone.arch.x: model.backbone.arch is 'E3D-XS' "
     '(str), not a dict; set model.backbone.arch itself'),
    ({'train_dataloader.dataset.pipeline.9.type': 'Resize'},
     '--cfg-options train_dataloader.dataset.pipeline.9.type: '
     'train_dataloader.dataset.pipeline is a list of 7; index it with 0..6'),
    ({'train_dataloader.dataset.pipeline.x': 1},
     '--cfg-options train_dataloader.dataset.pipeline.x: '
     'train_dataloader.dataset.pipeline is a list of 7; index it with 0..6'),
    ({'model.backbone': 5, 'model.backbone.arch': 'E3D-S'},
     '--cfg-options: model.backbone and model.backbone.arch both given'),
    ({'': 3}, '--cfg-options: empty key'),
    ({'a..b': 1}, "--cfg-options: 'a..b' is not a config key"),
])
def test_wrong_types_and_misplaced_options(options, line):
    with pytest.raises(LaunchError) as info:
        load_config(XS, options)
    assert str(info.value).startswith(line), str(info.value)


def test_valid_options_still_merge():
    cfg = load_config(XS, {
        'model.backbone.arch': 'E3D-S',
        'train_dataloader.dataset.pipeline.3.scale': (-1, 32),
        'train_cfg.max_epochs': 2,
        'new_key.sub': 1,
    })
    assert cfg.model.backbone.arch == 'E3D-S'
    assert cfg.train_dataloader.dataset.pipeline[3].scale == (-1, 32)
    assert cfg.train_cfg.max_epochs == 2
    assert cfg.new_key.sub == 1


# --------------------------------------------------------------- check_data
@pytest.mark.parametrize('dataset,line', [
    (dict(ann_file=5), 'train_dataloader.dataset.ann_file must be a path (a '
     'str), got 5 (int)'),
    (dict(ann_file=['a.txt']), 'train_dataloader.dataset.ann_file must be a '
     "path (a str), got ['a.txt'] (list)"),
    (dict(data_prefix='videos'), 'train_dataloader.dataset.data_prefix must '
     "be a dict such as dict(video='data/videos'), got 'videos'"),
    (dict(data_prefix=dict(video=3)), 'train_dataloader.dataset.data_prefix.'
     'video must be a path (a str), got 3 (int)'),
    (dict(data_root=7, ann_file='a.txt'), 'train_dataloader.dataset.data_root'
     ' must be a path (a str), got 7 (int)'),
    (dict(type='RepeatDataset', times=2, dataset=5),
     'train_dataloader.dataset.dataset must be a dict (the dataset config), '
     'got 5'),
    (dict(type='ConcatDataset', datasets=3), 'train_dataloader.dataset.'
     'datasets must be a list of dataset configs, got 3'),
    (dict(ann_file='/nonexistent/a.txt'), "train_dataloader.dataset.ann_file:"
     " '/nonexistent/a.txt' does not exist"),
    (dict(type='RepeatDataset', dataset=dict(ann_file='/nope/b.txt')),
     "train_dataloader.dataset.dataset.ann_file: '/nope/b.txt' does not "
     'exist'),
    (dict(type='ConcatDataset', datasets=[dict(), dict(ann_file='/x\0y')]),
     "train_dataloader.dataset.datasets.1.ann_file: '/x\0y' does not exist"),
])
def test_check_data_errors(dataset, line):
    cfg = Config(dict(train_dataloader=dict(dataset=dataset)))
    with pytest.raises(LaunchError) as info:
        check_data(cfg, ('train', ))
    assert str(info.value) == line or str(info.value).startswith(line), str(
        info.value)


def test_check_data_loader_not_a_dict():
    with pytest.raises(LaunchError, match='^val_dataloader must be a dict '
                       r'\(or None\), got 3$'):
        check_data(Config(dict(val_dataloader=3)), ('val', ))
    check_data(Config(dict(val_dataloader=None)), ('val', ))  # no loader


# -------------------------------------------- train.py: the build step
@pytest.mark.parametrize('options,line', [
    (['model.backbone.arch=E3D-X'], "error: model.backbone: arch 'E3D-X' is "
     'not a preset; choose one of'),
    (['model.backbone.out_indices=abc'], 'error: model.backbone: out_indices '
     'must be an int or a list/tuple of ints'),
    (['model.backbone.frozen_stages=99'], 'error: model.backbone: '
     'frozen_stages must be in -1..4, got 99'),
    (['model.backbone.norm_cfg.type=Nope'], "error: model.backbone: "
     "norm_cfg: unknown layer type 'Nope'"),
    (['model.backbone.arch=None', 'model.backbone.structure_file=/nonexist'],
     "error: model.backbone: structure_file '/nonexist' does not exist"),
    (['model.cls_head.type=Nope'], "error: model.cls_head: type 'Nope' is "
     'not registered in mmaction::model; check the spelling'),
    # PyTorch would fail only at the first step, with a shape error
    (['model.cls_head.in_channels=7'], 'error: model.cls_head.in_channels is '
     '7, but the E3D backbone gives 256 channels; set '
     'model.cls_head.in_channels=256'),
    (['train_dataloader.dataset.pipeline.2.type=Nope'],
     "error: train_dataloader.dataset.pipeline.2: type 'Nope' is not "
     'registered in mmaction::transform'),
    (['train_dataloader.sampler.type=Nope'], "error: train_dataloader."
     "sampler: type 'Nope' is not registered in mmaction::data sampler"),
    (['train_dataloader.dataset.type=Nope'], "error: train_dataloader."
     "dataset: type 'Nope' is not registered in mmaction::dataset"),
    (['val_evaluator.type=Nope'], "error: val_evaluator: type 'Nope' is not "
     'registered in mmaction::metric'),
    (['default_hooks.logger.type=Nope'], "error: default_hooks.logger: type "
     "'Nope' is not registered in mmaction::hook"),
    (['optim_wrapper.optimizer.type=Nope'], "error: optim_wrapper.optimizer."
     "type: 'Nope' is not registered in optimizer (e.g. 'SGD', 'AdamW')"),
    (['param_scheduler.0.type=Nope'], "error: param_scheduler.0.type: 'Nope'"
     ' is not registered in parameter scheduler'),
    # mmengine builds the schedulers only inside Runner.train()
    (['param_scheduler.0.T_maxx=3'], 'error: param_scheduler.0: '
     'LinearParamScheduler.__init__() got an unexpected keyword argument '
     "'T_maxx'"),
    (['param_scheduler.0.start_factor=-5'], 'error: param_scheduler.0: '
     'Starting multiplicative factor should between 0 and 1.'),
    (['val_dataloader=None'], 'error: cannot build the runner: '
     'val_dataloader, val_cfg, and val_evaluator should be either all None '
     'or not None'),
    (['model.backbone.init_cfg.type=Pretrained',
      'model.backbone.init_cfg.checkpoint=/nope.pth'],
     "error: model.backbone.init_cfg.checkpoint '/nope.pth' does not exist"),
    (['load_from=/nope.pth'], "error: load_from '/nope.pth' does not exist"),
    (['model.backbone=5'], "error: model.backbone must be a dict with a "
     "'type', got 5 (int)"),
    (['train_dataloader=3'], 'error: train_dataloader must be a dict'),
])
def test_train_build_errors_one_line(setup, capsys, options, line):
    code, err = run_main('train', [setup['config'], '--cfg-options',
                                   *options], capsys)
    assert_one_line(code, err, line)


def test_train_bad_flags_and_paths(setup, capsys, tmp_path):
    config = setup['config']
    blocker = tmp_path / 'file'
    blocker.write_text('')
    cases = [
        (['--work-dir', str(blocker / 'sub')],
         f"error: work_dir '{blocker / 'sub'}' cannot be created (Not a "
         'directory); choose another work dir'),
        (['--work-dir', str(blocker)], f"error: work_dir '{blocker}' is a "
         'file, not a directory; choose another work dir'),
        (['--resume', str(tmp_path / 'no.pth')], "error: --resume: "
         f"checkpoint '{tmp_path / 'no.pth'}' does not exist"),
        (['--resume', str(tmp_path)], f"error: --resume '{tmp_path}' is a "
         'directory'),
        (['--seed', '-5'], 'error: --seed must be in [0, 2**32), got -5'),
        (['--amp'], 'error: --amp needs a GPU; this machine has no CUDA'),
    ]
    for flags, line in cases:
        code, err = run_main('train', [config, *flags], capsys)
        assert_one_line(code, err, line)
        assert err.startswith(line), err
    empty = tmp_path / 'empty.py'
    empty.write_text('')
    code, err = run_main('train', [str(empty)], capsys)
    assert_one_line(code, err, 'error: the config sets no model, '
                    'train_dataloader, train_cfg, optim_wrapper')


def _checkpoints(setup, folder):
    """Files that are not (usable) checkpoints, by name."""
    state = setup['state_dict']
    out = {}

    def save(name, obj):
        out[name] = str(folder / name)
        torch.save(obj, out[name])

    save('list.pth', [1, 2])
    save('state5.pth', {'state_dict': 5})
    save('no_weights.pth', {'meta': {}})
    missing = dict(state)
    first = next(iter(missing))
    del missing[first]
    save('missing.pth', {'state_dict': missing})
    shaped = dict(state)
    shaped['cls_head.fc_cls.weight'] = torch.zeros(3, 3)
    save('shape.pth', {'state_dict': shaped})
    out['text.pth'] = str(folder / 'text.pth')
    (folder / 'text.pth').write_text('hello')
    out['empty.pth'] = str(folder / 'empty.pth')
    (folder / 'empty.pth').write_text('')
    return out, first


def test_test_checkpoint_errors(setup, capsys, tmp_path):
    files, first = _checkpoints(setup, tmp_path)
    cases = {
        'list.pth': "holds a list, not a checkpoint (a dict with a "
        'state_dict)',
        'state5.pth': 'its state_dict is 5 (int), not a dict of weights',
        'no_weights.pth': 'holds no weights (no tensors in its state_dict)',
        'missing.pth': "does not match the model of the config: 1 of the "
        f"model's {len(setup['state_dict'])} weights are missing (first: "
        f'{first}); use the config it was trained with',
        'shape.pth': 'does not match the model of the config: 1 have another '
        'shape (first: cls_head.fc_cls.weight: (3, 3) in the checkpoint, '
        '(10, 256) in the model)',
        'text.pth': 'cannot be loaded; is it a PyTorch checkpoint (.pth)?',
        'empty.pth': 'is an empty file',
    }
    work = str(tmp_path / 'work')
    for name, line in cases.items():
        code, err = run_main('test', [setup['config'], files[name],
                                      '--work-dir', work], capsys)
        assert_one_line(code, err, f"error: checkpoint '{files[name]}' "
                        f'{line}' if not line.startswith('its') else
                        f"error: checkpoint '{files[name]}': {line}")
    for argv, line in [
        ([str(tmp_path / 'nope.pth')], 'does not exist'),
        ([str(tmp_path)], 'is a directory'),
    ]:
        code, err = run_main('test', [setup['config'], *argv], capsys)
        assert_one_line(code, err, f"error: checkpoint '{argv[0]}' {line}")
    blocker = tmp_path / 'blocker'
    blocker.write_text('')
    folder = tmp_path / 'd.pkl'
    folder.mkdir()
    for flags, line in [
        (['--dump', 'x.txt'], 'error: --dump must name a .pkl or .pickle '
         'file'),
        (['--dump', str(blocker / 'a.pkl')], f"error: --dump folder "
         f"'{blocker}' is a file, not a directory; choose another file name"),
        (['--dump', str(folder)], f"error: --dump '{folder}' is a "
         'directory; give a file name'),
        (['--work-dir', str(blocker)], f"error: work_dir '{blocker}' is a "
         'file'),
        (['--cfg-options', 'model.backbone.frozen_stages=abc'],
         'error: model.backbone: frozen_stages must be an int'),
        (['--cfg-options', 'model.backbone.arch=E3D-S',
          'model.cls_head.in_channels=512'],
         f"error: checkpoint '{setup['weights']}' does not match the model "
         'of the config: '),
        (['--cfg-options', 'test_dataloader.dataset.pipeline.4.crop_size=-1'],
         'error: test_dataloader.dataset.pipeline.4'),
    ]:
        code, err = run_main('test', [setup['config'], setup['weights'],
                                      *flags], capsys)
        assert_one_line(code, err, line)


def test_resume_refuses_what_it_cannot_continue(setup, capsys, tmp_path):
    state = setup['state_dict']
    good_meta = dict(meta=dict(epoch=1, iter=4), message_hub={})
    weights_only = setup['weights']
    shaped = dict(state)
    shaped['cls_head.fc_cls.weight'] = torch.zeros(3, 3)
    other_model = str(tmp_path / 'other_model.pth')
    torch.save(dict(state_dict=shaped, **good_meta), other_model)
    # the XS recipe's paramwise_cfg puts each parameter in its own group
    one_group = str(tmp_path / 'one_group.pth')
    torch.save(dict(state_dict=state, optimizer=dict(
        state={}, param_groups=[dict(params=list(range(53)))]),
                    **good_meta), one_group)
    cases = [
        (weights_only, f"error: --resume '{weights_only}' holds no training "
         'state (meta.epoch, meta.iter, message_hub) to resume; to start from'
         f' its weights, use --cfg-options load_from={weights_only} without '
         '--resume'),
        (other_model, f"error: --resume '{other_model}' does not match the "
         'model of the config: 1 have another shape'),
        (one_group, f"error: --resume '{one_group}': its optimizer has 1 "
         "parameter group of 53 parameters, the config's 53 parameter groups "
         'of 53 parameters; resume with the optimizer settings'),
    ]
    for path, line in cases:
        code, err = run_main('train', [setup['config'], '--resume', path,
                                       '--work-dir', str(tmp_path / 'w')],
                             capsys)
        assert_one_line(code, err, line)
        assert err.startswith(line), err
    # --resume alone: the work dir's last_checkpoint names a missing file
    work = tmp_path / 'auto'
    work.mkdir()
    (work / 'last_checkpoint').write_text(str(work / 'gone.pth'))
    code, err = run_main('train', [setup['config'], '--resume',
                                   '--work-dir', str(work)], capsys)
    assert_one_line(code, err, "error: --resume (the latest checkpoint, "
                    f"named in {work / 'last_checkpoint'}) "
                    f"'{work / 'gone.pth'}' does not exist")


def test_cli_build_error_no_traceback(setup):
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'),
         setup['config'], '--cfg-options', 'model.backbone.frozen_stages=99'],
        capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == ('error: model.backbone: frozen_stages must be in '
                           '-1..4, got 99\n')


def _losses(work_dir):
    """The training losses logged in ``work_dir`` (its newest run)."""
    runs = sorted(d for d in os.listdir(work_dir)
                  if osp.isdir(osp.join(work_dir, d)) and d[:1].isdigit())
    path = osp.join(work_dir, runs[-1], 'vis_data', 'scalars.json')
    with open(path) as f:
        records = [json.loads(line) for line in f]
    return [r['loss'] for r in records if 'loss' in r]


@pytest.mark.slow
def test_build_step_changes_nothing_and_resume_and_test_work(setup, capsys,
                                                             tmp_path):
    """The tool builds loops and optimizer before running: the losses are
    those of a plain ``Runner.from_cfg(cfg).train()``; its checkpoint
    resumes and tests."""
    from mmengine.runner import Runner
    plain = str(tmp_path / 'plain')
    cfg = Config.fromfile(setup['config'])
    cfg.work_dir = plain
    Runner.from_cfg(cfg).train()
    tool_dir = str(tmp_path / 'tool')
    assert load_tool('train').main([setup['config'], '--work-dir',
                                    tool_dir]) == 0
    expected = _losses(plain)
    assert len(expected) == 2  # 10 training clips, batches of 5
    assert np.array_equal(_losses(tool_dir), expected)
    assert load_tool('train').main([
        setup['config'], '--work-dir', tool_dir, '--resume',
        '--cfg-options', 'train_cfg.max_epochs=2']) == 0
    assert len(_losses(tool_dir)) == 2  # only epoch 2 ran in this run
    assert osp.exists(osp.join(tool_dir, 'epoch_2.pth'))
    capsys.readouterr()
    dump = str(tmp_path / 'dumps' / 'out.pkl')  # its folder is created
    assert load_tool('test').main([
        setup['config'], osp.join(tool_dir, 'epoch_2.pth'), '--work-dir',
        str(tmp_path / 'test'), '--dump', dump]) == 0
    assert osp.getsize(dump) > 0


def test_setup_distributed_on_cpu(monkeypatch):
    """One gloo process: the config gets gloo, no device ids, no
    channels_last; a missing torchrun variable or a CUDA-only launcher is
    one line."""
    import socket

    import torch.distributed as dist

    from e3d_plugin.launch import end_distributed, setup_distributed
    if torch.cuda.is_available():
        pytest.skip('the CPU path is taken only without CUDA')
    cfg = Config(dict(env_cfg=None, model=dict(backbone=dict(
        type='E3D', channels_last=True))))
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(LaunchError, match='^--launcher pytorch expects '
                       'torchrun to set RANK, WORLD_SIZE, LOCAL_RANK, '
                       'MASTER_ADDR, MASTER_PORT; start it with '
                       'tools/dist_train.sh$'):
        setup_distributed(cfg, 'pytorch')
    with pytest.raises(LaunchError, match='^--launcher slurm needs CUDA'):
        setup_distributed(cfg, 'slurm')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    for key, value in dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0',
                           MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(port)).items():
        monkeypatch.setenv(key, value)
    try:
        assert setup_distributed(cfg, 'pytorch') is True
        assert dist.is_initialized() and dist.get_backend() == 'gloo'
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert cfg.model_wrapper_cfg.device_ids is None
        assert cfg.model.backbone.channels_last is False
    finally:
        end_distributed()
    assert not dist.is_initialized()
    assert setup_distributed(Config(dict()), 'none') is False


def test_scheduler_trial_build_leaves_several_optimizers_to_mmengine():
    """The trial build of the schedulers needs one optimizer; with an
    ``OptimWrapperDict`` (several) it leaves them to mmengine, and with one
    it never touches the real optimizer's learning rate."""
    from types import SimpleNamespace

    from mmengine.optim import OptimWrapper, OptimWrapperDict
    from mmengine.runner import Runner

    from e3d_plugin.launch.runner import _try_schedulers
    schedulers = [dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                       begin=0, end=10)]
    sgd = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    several = OptimWrapperDict(a=OptimWrapper(sgd))
    assert _try_schedulers(SimpleNamespace(optim_wrapper=several),
                           dict(param_scheduler=schedulers)) is None
    runner = SimpleNamespace(optim_wrapper=OptimWrapper(sgd),
                             _train_loop=None, train_dataloader=[0] * 5)
    runner._build_param_scheduler = (
        lambda s, o: Runner._build_param_scheduler(runner, s, o))
    _try_schedulers(runner, dict(param_scheduler=schedulers))
    assert sgd.param_groups[0]['lr'] == 0.1
    assert 'initial_lr' not in sgd.param_groups[0]
