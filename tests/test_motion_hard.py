"""The hard preset of the synthetic motion videos."""
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from scipy import stats

from e3d_plugin.datasets import motion_hard
from e3d_plugin.datasets.motion_hard import (CLASSES, SCALE_RANGE,
                                             attributes, render)
from e3d_plugin.datasets.synthetic_motion import (SyntheticMotionError,
                                                  check_decodes, generate,
                                                  probe_single_vs_multi_frame,
                                                  write_video)
from tests.helpers import ROOT, load_tool

CONFIG = osp.join(ROOT, 'configs', 'e3d', 'e3d_xs_8x4x1_motion-hard.py')


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('motion_hard'))
    return generate(out, num_videos=40, size=32, frames=16, seed=5,
                    preset='hard')


def test_generator_deterministic_and_balanced(tmp_path, dataset):
    assert len(CLASSES) >= 20 and len(set(CLASSES)) == len(CLASSES)
    assert dataset['counts'] == {'train': [1] * 20, 'val': [1] * 20}
    assert open(osp.join(dataset['out'], 'classes.txt')).read().split() == (
        list(CLASSES))
    again = generate(str(tmp_path / 'again'), num_videos=40, size=32,
                     frames=16, seed=5, preset='hard')
    for split in ('train', 'val'):
        lines = open(dataset[f'{split}_list']).read().splitlines()
        assert lines == open(again[f'{split}_list']).read().splitlines()
        assert sorted(int(line.split()[1]) for line in lines) == list(
            range(20))
    for name in ('train_00003.mp4', 'val_00017.mp4'):
        first = open(osp.join(dataset['videos'], name), 'rb').read()
        assert first == open(osp.join(again['videos'], name), 'rb').read()
    other = generate(str(tmp_path / 'other'), num_videos=40, size=32,
                     frames=16, seed=6, preset='hard')
    assert open(osp.join(other['videos'], 'train_00003.mp4'), 'rb').read() \
        != open(osp.join(dataset['videos'], 'train_00003.mp4'), 'rb').read()
    a = render(np.random.default_rng(1), 7, 16, 32)
    assert a.shape == (16, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render(np.random.default_rng(1), 7, 16, 32))


def one_frame_per_video(label, videos=2000, frames=16, size=40, seed=0):
    """Each attribute at one random frame of each of ``videos`` videos."""
    pick = np.random.default_rng([seed, 1, label])
    values = {key: [] for key in motion_hard.ATTRIBUTES}
    for index in range(videos):
        actor = attributes(np.random.default_rng([seed, label, index]),
                           label, frames, size)
        t = pick.integers(frames)
        for key in values:
            values[key].append(actor[key][t])
    return {key: np.array(v) for key, v in values.items()}


def test_single_frame_attributes_equal_across_classes():
    size = 40
    low, high = SCALE_RANGE
    p_values = []
    for label in range(len(CLASSES)):
        values = one_frame_per_video(label, size=size)
        for key, cdf in (('x', stats.uniform(0, size).cdf),
                         ('y', stats.uniform(0, size).cdf),
                         ('scale', stats.uniform(low, high - low).cdf)):
            p_values.append(stats.kstest(values[key], cdf).pvalue)
        for key in ('inverted', 'disk'):
            assert set(np.unique(values[key])) <= {0, 1}
            p_values.append(stats.binomtest(
                int(values[key].sum()), len(values[key])).pvalue)
    # 100 tests at 1 / 1000 each: a real difference of one class's
    # per-frame distribution is far below this
    assert min(p_values) > 1e-3
    # and the frames of different classes are indistinguishable from one
    # another too, not only from the stated distributions
    pooled = [one_frame_per_video(label, videos=1000, seed=2)['scale']
              for label in range(len(CLASSES))]
    assert stats.kruskal(*pooled).pvalue > 1e-3


def test_classes_change_over_time_as_named():
    frames, size = 32, 40

    def actor(name, seed=0):
        return attributes(np.random.default_rng(seed), CLASSES.index(name),
                          frames, size)

    def unwrapped_steps(values):
        steps = np.diff(values)
        return (steps + size / 2) % size - size / 2

    slow = unwrapped_steps(actor('move_right_slow')['x'])
    fast = unwrapped_steps(actor('move_right_fast')['x'])
    assert np.allclose(slow, 0.3 * size / frames)
    assert np.allclose(fast, 0.75 * size / frames)
    assert np.allclose(unwrapped_steps(actor('move_up_fast')['y']),
                       -0.75 * size / frames)
    assert np.allclose(np.diff(actor('move_up_fast')['x']), 0)
    for name, grows in (('speed_up', True), ('slow_down', False)):
        a = actor(name)
        speed = np.hypot(unwrapped_steps(a['x']), unwrapped_steps(a['y']))
        assert (np.diff(speed) > 0).all() == grows
        assert (np.diff(speed) < 0).all() == (not grows)
    for name, hops in (('bounce_twice', 2), ('bounce_three_times', 3)):
        height = -unwrapped_steps(actor(name)['y']).cumsum()
        # a hop lands where it started: count the landings
        landings = ((height[1:-1] < height[:-2]) &
                    (height[1:-1] <= height[2:])).sum()
        assert landings == hops - 1
    assert (np.diff(actor('approach')['scale']) > 0).all()
    assert (np.diff(actor('recede')['scale']) < 0).all()
    peak = actor('approach_then_recede')['scale']
    assert 0 < np.argmax(peak) < frames - 1
    trough = actor('recede_then_approach')['scale']
    assert 0 < np.argmin(trough) < frames - 1
    for seed in range(5):
        a = actor('invert_then_reshape', seed)
        b = actor('reshape_then_invert', seed)
        assert np.flatnonzero(np.diff(a['inverted']))[0] < np.flatnonzero(
            np.diff(a['disk']))[0]
        assert np.flatnonzero(np.diff(b['inverted']))[0] > np.flatnonzero(
            np.diff(b['disk']))[0]
        assert np.count_nonzero(np.diff(actor('reshape_twice', seed)[
            'disk'])) == 2
        assert np.count_nonzero(np.diff(actor('reshape_three_times', seed)[
            'disk'])) == 3
        assert np.count_nonzero(np.diff(actor('approach', seed)[
            'disk'])) == 0


def test_single_frame_pixels_near_chance():
    single, _ = probe_single_vs_multi_frame(num_videos=400, size=32,
                                            frames=16, seed=0, preset='hard')
    assert single < 1.5 / len(CLASSES)


def test_dataset_loads_through_mmaction(dataset):
    from mmaction.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmaction')
    cfg = Config.fromfile(CONFIG)
    assert cfg.model.cls_head.num_classes == len(CLASSES)
    assert cfg.data_root == 'data/motion_hard'
    assert cfg.crop_size == motion_hard.DEFAULTS['size']
    for split in ('train', 'val'):
        ds_cfg = cfg[f'{split}_dataloader'].dataset
        ds_cfg.ann_file = dataset[f'{split}_list']
        ds_cfg.data_prefix = dict(video=dataset['videos'])
        ds = DATASETS.build(ds_cfg)
        assert len(ds) == 20
        item = ds[11]
        # 32px videos resized to the config's 40px crops
        assert tuple(item['inputs'].shape) == (1, 3, 8, 40, 40)
        assert item['data_samples'].gt_label.item() == 11


def test_analyze_reads_the_config_clip(capsys):
    import json
    assert load_tool('analyze').main([CONFIG, '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['frames'] == 8
    assert result['image_size'] == [40, 40]
    # E3D-XS on 8x40x40 clips, as the cost model counts it
    assert result['flops'] == 15409152


def test_tool_presets_and_errors(tmp_path, capsys):
    tool = load_tool(osp.join(ROOT, 'tools', 'data', 'synthetic_motion.py'))
    out = tmp_path / 'hard'
    assert tool.main(['--preset', 'hard', '--out', str(out), '--num-videos',
                      '40', '--size', '32', '--frames', '8']) == 0
    assert 'wrote 20 train and 20 val videos (20 classes, 8 frames of ' \
        '32x32)' in capsys.readouterr().out
    assert len(open(out / 'classes.txt').read().split()) == 20
    assert tool.main(['--preset', 'hard', '--out', str(tmp_path / 'x'),
                      '--num-videos', '30']) == 2
    assert capsys.readouterr().err.strip() == (
        'error: num_videos must be an integer >= 40, got 30')
    with pytest.raises(SystemExit) as exc:
        tool.main(['--preset', 'harder'])
    assert exc.value.code == 2
    with pytest.raises(SyntheticMotionError, match='preset must be one of '
                       'basic, hard'):
        generate(str(tmp_path / 'y'), preset='harder')
    with pytest.raises(SyntheticMotionError, match='label must be in'):
        attributes(np.random.default_rng(0), 20, 8, 32)


def test_unreadable_size_is_refused(tmp_path, monkeypatch):
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    path = str(tmp_path / 'v.mp4')
    write_video(path, frames, 16)
    check_decodes(path, 8, 32)
    with pytest.raises(SyntheticMotionError,
                       match='size 40: decord cannot read back 40x40'):
        check_decodes(path, 8, 40)
    with pytest.raises(SyntheticMotionError, match='size 32'):
        check_decodes(path, 9, 32)
    # generate() checks its first video before it writes anything
    from e3d_plugin.datasets import synthetic_motion

    def refuse(path, frames, size):
        raise SyntheticMotionError(f'size {size}: refused')

    monkeypatch.setattr(synthetic_motion, 'check_decodes', refuse)
    with pytest.raises(SyntheticMotionError, match='size 32: refused'):
        generate(str(tmp_path / 'data'), num_videos=40, size=32, frames=8,
                 preset='hard')
    assert not (tmp_path / 'data').exists()
