"""tools/analyze.py: table, JSON, errors."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from e3d_plugin.structure import save_structure
from tests.helpers import ROOT, analyze_main

TOOL = osp.join(ROOT, 'tools', 'analyze.py')


@pytest.mark.parametrize(
    'name,size,frames,flops,params,layers,stentr,feature,activation', [
        ('E3D-S', 160, 13, 1863680000, 1976232, 83, 202.8559146389,
         2662400, 236566784),
        ('E3D-M', 224, 16, 4642910720, 1840680, 83, 204.9404058703,
         6422528, 584968832),
        ('E3D-L', 312, 16, 18340335744, 4097744, 167, 411.8081687491,
         12460032, 2043313536),
    ])
def test_json_presets(capsys, name, size, frames, flops, params, layers,
                      stentr, feature, activation):
    code = analyze_main()([name, '--image-size', str(size), '--frames',
                           str(frames), '--json'])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)  # exactly one JSON object
    assert (result['flops'], result['params'], result['layers']) == (
        flops, params, layers)
    assert result['stentr'] == pytest.approx(stentr, rel=1e-9)
    assert len(result['blocks']) == 7
    assert (result['max_feature'], result['activation_bytes']) == (
        feature, activation)
    assert max(b['max_feature'] for b in result['blocks']) == feature
    assert sum(b['activation_bytes'] for b in result['blocks']) == activation
    assert result['memory_options'] == dict(act='relu', with_cp=False)


def test_table_and_files(capsys, tmp_path, structure_of):
    path = save_structure(structure_of('btn', se=0.25),
                          str(tmp_path / 's.json'))
    assert analyze_main()([path, '--image-size', '32', '48',
                           '--frames', '4']) == 0
    out = capsys.readouterr().out
    assert 'clip 4x32x48' in out
    assert out.splitlines()[2].split()[:4] == ['0', 'conv', '1', '8x4x16x24']
    assert out.splitlines()[-2].startswith('total')
    assert out.splitlines()[1].endswith('layers max feat (M) act. (MiB)')
    reference = osp.join(ROOT, 'e3d_plugin', 'presets', 'E3D_S.txt')
    assert analyze_main()([reference, '--image-size', '160', '--frames',
                           '13', '--json', '--score-cfg', 'refine=False']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['flops'] == 1863680000
    assert result['stentr'] == pytest.approx(183.3612727275416, rel=1e-9)


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    """Configs an analysis must refuse, by name."""
    root = tmp_path_factory.mktemp('analyze_configs')
    base = osp.join(ROOT, 'configs', 'e3d', 'e3d_m_u16_sthv1-rgb.py')
    files = {
        'resnet.py': "model = dict(backbone=dict(type='ResNet3d'))\n",
        'no_backbone.py': "model = dict(type='Recognizer3D')\n",
        'no_model.py': 'x = 1\n',
        'bad_arch.py': f"_base_ = ['{base}']\n"
        "model = dict(backbone=dict(arch='E3D-X'))\n",
        'arch_list.py': f"_base_ = ['{base}']\n"
        "model = dict(backbone=dict(arch=['E3D-M']))\n",
        'syntax.py': 'model = dict(\n',
        'crop_str.py': f"_base_ = ['{base}']\n"
        "val_dataloader = dict(dataset=dict(pipeline=[\n"
        "    dict(type='UniformSample', clip_len=16),\n"
        "    dict(type='CenterCrop', crop_size='big')]))\n",
        'clip_zero.py': f"_base_ = ['{base}']\n"
        "val_dataloader = dict(dataset=dict(pipeline=[\n"
        "    dict(type='SampleFrames', clip_len=0)]))\n",
        'crop_triple.py': f"_base_ = ['{base}']\n"
        "val_dataloader = dict(dataset=dict(pipeline=[\n"
        "    dict(type='ThreeCrop', crop_size=(1, 2, 3))]))\n",
        'huge_crop.py': f"_base_ = ['{base}']\n"
        "val_dataloader = dict(dataset=dict(pipeline=[\n"
        "    dict(type='UniformSample', clip_len=16),\n"
        "    dict(type='CenterCrop', crop_size=100000)]))\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / 'folder.py').mkdir()
    return root


@pytest.mark.parametrize('args,message', [
    (['nope'], "error: 'nope' is neither a preset"),
    (['/nonexistent/s.json'], "error: '/nonexistent/s.json' is neither a "
     'preset'),
    (['E3D-M', '--frames', '0'], 'error: --frames must be an integer in '
     '1..1024, got 0'),
    (['E3D-M', '--frames', '-1'], 'error: --frames must be an integer in '
     '1..1024, got -1'),
    (['E3D-M', '--frames', '100000'], 'error: --frames must be an integer in '
     '1..1024, got 100000'),
    (['E3D-M', '--image-size', '0'], 'error: --image-size takes one or two '
     'integers in 1..4096 (height, width), got 0'),
    (['E3D-M', '--image-size', '-5', '8'], 'error: --image-size takes one or '
     'two integers in 1..4096 (height, width), got -5 8'),
    (['E3D-M', '--image-size', '100000'], 'error: --image-size takes one or '
     'two integers in 1..4096 (height, width), got 100000'),
    (['E3D-M', '--image-size', '1', '2', '3'], 'error: --image-size takes '
     'one or two integers in 1..4096 (height, width), got 1 2 3'),
    (['E3D-M', '--image-size', 'abc'], "error: argument --image-size: "
     "invalid int value: 'abc' (see --help)"),
    (['E3D-M', '--score-cfg', 'type=Nope'],
     "error: unknown score type 'Nope'; registered: FlopsScore, "
     'GradNormScore, LayersScore, NASWOTScore, ParamsScore, RandomScore, '
     'STEntrScore, SynFlowScore, ZenScore, ZiCoScore'),
    (['E3D-M', '--score-cfg', 'stage_weights=(1,1)'],
     'error: STEntrScore: the structure has 5 stages'),
    (['E3D-M', '--score-cfg', 'stage_weights=7'],
     'error: STEntrScore: stage_weights must be a non-empty list'),
    (['E3D-M', '--score-cfg', 'refine=maybe'],
     'error: STEntrScore: refine must be True or False'),
    (['E3D-M', '--score-cfg', 'foo'],
     "error: --score-cfg: expected KEY=VALUE, got 'foo'"),
    (['E3D-M', '--score-cfg', '=1'],
     "error: --score-cfg: '' is not an argument name"),
    (['E3D-M', '--score-cfg', 'nope=1'],
     "error: --score-cfg: STEntrScore takes no argument 'nope'; it takes "
     'image_size, frames, stage_weights, refine'),
    (['E3D-M', '--score-cfg', 'frames=0'],
     'error: STEntrScore: frames must be'),
    (['E3D-M', '--latency-cfg', 'device=cpu'],
     'error: --latency-cfg and --measure-latency go with --latency'),
    (['E3D-M', '--cfg-options', 'a=1'],
     "error: --cfg-options goes with a config (.py), not with 'E3D-M'"),
    (['E3D-M', '--cfg-options', 'foo'],
     "error: --cfg-options: 'foo' is not KEY=VALUE"),
])
def test_errors_one_line_exit_2(capsys, args, message):
    try:
        code = analyze_main()(args)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert err.count('\n') == 1


@pytest.mark.parametrize('name,extra,message', [
    ('resnet.py', [], "model.backbone.type is 'ResNet3d', not 'E3D'"),
    ('no_backbone.py', [], "the config has no model.backbone; give a config "
     "with backbone=dict(type='E3D')"),
    ('no_model.py', [], 'the config has no model.backbone'),
    ('bad_arch.py', [], "model.backbone: arch 'E3D-X' is not a preset"),
    ('arch_list.py', [], 'model.backbone.arch must be a preset name, got '
     'list'),
    ('crop_str.py', [], 'val_dataloader.dataset.pipeline.1.crop_size must be '
     "a positive integer, got 'big'"),
    ('clip_zero.py', [], 'val_dataloader.dataset.pipeline.0.clip_len must be '
     'a positive integer, got 0'),
    ('crop_triple.py', [], 'val_dataloader.dataset.pipeline.0.crop_size must '
     'be an int or a (w, h) pair, got (1, 2, 3)'),
    ('huge_crop.py', [], "the config's clip 16x100000x100000 exceeds 1024 "
     'frames or 4096 pixels; set --frames / --image-size'),
    ('syntax.py', [], "has a syntax error at line 1: '(' was never closed"),
    ('folder.py', [], 'is a directory'),
    ('bad_arch.py', ['--cfg-options', 'model.backbone=5'],
     "model.backbone must be a dict with a 'type', got 5 (int)"),
    ('bad_arch.py', ['--cfg-options', 'model.backbone.arch=None',
                     'model.backbone.structure_file=missing.json'],
     "model.backbone: structure_file '"),
])
def test_config_errors_one_line_exit_2(capsys, configs, name, extra,
                                       message):
    assert analyze_main()([str(configs / name), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and message in err, err
    assert err.count('\n') == 1


def test_huge_crop_analyzed_with_explicit_clip(capsys, configs):
    path = str(configs / 'huge_crop.py')
    assert analyze_main()([path, '--image-size', '224', '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['image_size'] == [224, 224] and result['frames'] == 16
    assert result['flops'] == 4642910720 and result['notes'] == []


def _shape_after(pipeline, height=240, width=320):
    """``(h, w)`` of a clip after the geometric transforms of ``pipeline``,
    run by mmaction2 itself on frames of ``height`` x ``width``."""
    import numpy as np
    from mmaction.registry import TRANSFORMS
    from mmengine.registry import init_default_scope
    init_default_scope('mmaction')
    results = dict(imgs=[np.zeros((height, width, 3), np.uint8)] * 2,
                   img_shape=(height, width), original_shape=(height, width),
                   modality='RGB', num_clips=1, clip_len=2)
    for step in pipeline:
        if step['type'] in ('Resize', 'CenterCrop', 'ThreeCrop', 'TenCrop',
                            'RandomCrop', 'RandomResizedCrop',
                            'MultiScaleCrop', 'Flip'):
            results = TRANSFORMS.build(dict(step))(results)
    return tuple(results['img_shape'])


#: val pipeline -> (frames, (h, w), note or None); None for frames or
#: size means the default (16, 224)
PIPELINES = [
    ('center_crop_pair', [
        dict(type='SampleFrames', clip_len=8, frame_interval=2, num_clips=1),
        dict(type='Resize', scale=(-1, 256)),
        dict(type='CenterCrop', crop_size=(200, 160))], 8, (160, 200), None),
    ('three_crop', [
        dict(type='UniformSample', clip_len=12, num_clips=2),
        dict(type='Resize', scale=(-1, 256)),
        dict(type='ThreeCrop', crop_size=256)], 12, (256, 256), None),
    ('ten_crop_pair', [
        dict(type='SampleFrames', clip_len=4, num_clips=10),
        dict(type='Resize', scale=(-1, 256)),
        dict(type='TenCrop', crop_size=(224, 192))], 4, (192, 224), None),
    ('random_crop', [
        dict(type='SampleFrames', clip_len=6),
        dict(type='RandomCrop', size=112)], 6, (112, 112), None),
    ('resize_fixed', [
        dict(type='UniformSample', clip_len=16),
        dict(type='RandomResizedCrop'),
        dict(type='Resize', scale=(176, 144), keep_ratio=False)],
     16, (144, 176), None),
    ('short_side_only', [
        dict(type='SampleFrames', clip_len=8),
        dict(type='Resize', scale=(-1, 128))], 8, (128, 128),
     'resizes the short side to 128 and keeps the aspect ratio, and no crop '
     'follows: analyzed as 128x128'),
    ('no_resize_no_crop', [dict(type='SampleFrames', clip_len=8)], 8,
     (224, 224), 'the val pipeline neither crops nor resizes to a fixed '
     'size: analyzed 224x224 (set --image-size)'),
    # the train pipeline of the base config samples 16 frames
    ('no_sampler', [
        dict(type='Resize', scale=(-1, 256)),
        dict(type='CenterCrop', crop_size=160)], 16, (160, 160),
     'the val pipeline has no frame sampler with clip_len: analyzed 16 '
     'frames, the clip_len of the train pipeline'),
]


@pytest.mark.parametrize('name,pipeline,frames,size,note', PIPELINES,
                         ids=[p[0] for p in PIPELINES])
def test_config_clip_of_valid_mmaction_pipelines(capsys, tmp_path, name,
                                                 pipeline, frames, size,
                                                 note):
    base = osp.join(ROOT, 'configs', 'e3d', 'e3d_m_u16_sthv1-rgb.py')
    path = tmp_path / f'{name}.py'
    # the train pipeline has a random crop only: the val one decides
    path.write_text(
        f"_base_ = ['{base}']\n"
        f'val_dataloader = dict(dataset=dict(pipeline={pipeline!r}))\n'
        'test_dataloader = val_dataloader\n')
    assert analyze_main()([str(path), '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['frames'] == frames
    assert tuple(result['image_size']) == size
    if note is None:
        assert result['notes'] == []
        assert _shape_after(pipeline) == size  # what mmaction2 makes of it
    else:
        assert len(result['notes']) == 1 and note in result['notes'][0]
    assert analyze_main()([str(path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == (f'{path}: clip {frames}x{size[0]}x{size[1]}')
    assert [line.startswith('note: ') for line in table[1:3]] == [
        note is not None, False]
    # the clip flags override the config and drop its notes
    assert analyze_main()([str(path), '--json', '--frames', '5',
                           '--image-size', '96', '64']) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result['frames'], result['image_size'], result['notes']) == (
        5, [96, 64], [])


def test_memory_of_a_config_follows_its_backbone(capsys):
    """A config's with_cp and act_cfg (SiLU) enter activation_bytes, named
    in a note; an activation the model does not know and a causal backbone
    are named too."""
    from e3d_plugin.cost import compute_cost
    from e3d_plugin.structure import load_structure
    config = osp.join(ROOT, 'configs', 'e3d',
                      'e3d_xs_8x4x1_synthetic-motion.py')

    def analyze(*options):
        args = [config, '--json']
        if options:
            args += ['--cfg-options', *options]
        assert analyze_main()(args) == 0
        return json.loads(capsys.readouterr().out)

    plain = analyze()
    frames, (height, width) = plain['frames'], plain['image_size']
    xs = load_structure('E3D-XS')
    assert plain['activation_bytes'] == compute_cost(
        xs, (height, width), frames).activation_bytes
    configured = analyze('model.backbone.with_cp=True',
                         'model.backbone.act_cfg.type=SiLU')
    assert configured['memory_options'] == dict(act='swish', with_cp=True)
    assert configured['activation_bytes'] == compute_cost(
        xs, (height, width), frames, act='swish',
        with_cp=True).activation_bytes
    assert ('activation_bytes of the backbone as configured: SiLU where a '
            'block sets no act, with_cp') in configured['notes']
    other = analyze('model.backbone.act_cfg.type=GELU',
                    'model.backbone.causal=True')
    assert other['activation_bytes'] == plain['activation_bytes']
    assert any(note.startswith("activation_bytes counts ReLU where act_cfg "
                               "is {'type': 'GELU'") for note in
               other['notes'])
    assert any(note.startswith('activation_bytes is that of the non-causal '
                               'backbone') for note in other['notes'])


def test_score_cfg_booleans_read_as_booleans(capsys):
    results = {}
    for text in ('False', 'false', 'FALSE', 'True', 'true'):
        assert analyze_main()(['E3D-M', '--json', '--score-cfg',
                               f'refine={text}']) == 0
        result = json.loads(capsys.readouterr().out)
        assert result['score_cfg']['refine'] is (text.lower() == 'true')
        results[text] = result['stentr']
    assert results['False'] == results['false'] == results['FALSE']
    assert results['True'] == results['true'] != results['false']


def test_cli_bad_file_no_traceback(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('[{"kind": "conv", "in": 3, "out": 8, "k": 2}]')
    proc = subprocess.run([sys.executable, TOOL, str(bad), '--json'],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ''
    assert proc.stderr.strip() == (
        f"error: {bad}: block 0 (conv): field 'k' must be an odd positive "
        'kernel size (1, 3, 5, ...), got 2')
