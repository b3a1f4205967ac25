"""mmaction2's own inference API (``init_recognizer`` and
``inference_recognizer``) with every E3D config, as a new user runs it."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from tests.helpers import ROOT

CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'e3d', '*.py')))
# Small enough to run every view of the config's own test pipeline here.
SMALL = ('e3d_xs', )


def synthetic_frames(frames=24, size=64, label=2):
    from e3d_plugin.datasets.synthetic_motion import render
    return render(np.random.default_rng(label), label, frames, size)


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    """A video file and the same frames as a raw-frame folder."""
    import cv2

    from e3d_plugin.datasets.synthetic_motion import write_video
    root = tmp_path_factory.mktemp('inference')
    frames = synthetic_frames()
    video = str(root / 'clip.mp4')
    write_video(video, frames, 8)
    frame_dir = root / 'clip_frames'
    frame_dir.mkdir()
    for index, frame in enumerate(frames, 1):
        cv2.imwrite(str(frame_dir / f'{index:05}.jpg'), frame)
    return dict(video=video, frame_dir=str(frame_dir), total=len(frames))


def one_view(cfg):
    """The config's test pipeline with one clip and one centre crop."""
    pipeline = []
    for step in cfg.test_pipeline:
        step = dict(step)
        if 'num_clips' in step:
            step['num_clips'] = 1
        if step['type'] in ('ThreeCrop', 'TenCrop'):
            step = dict(type='CenterCrop', crop_size=step['crop_size'])
        pipeline.append(step)
    cfg.test_pipeline = pipeline
    return cfg


def video_input(cfg, inputs):
    """What ``inference_recognizer`` takes for this config: a video path,
    or a raw-frame dict for configs that decode frame folders."""
    if any(step['type'] == 'RawFrameDecode' for step in cfg.test_pipeline):
        return dict(frame_dir=inputs['frame_dir'],
                    total_frames=inputs['total'], label=-1, start_index=1,
                    filename_tmpl='{:05}.jpg', modality='RGB')
    return inputs['video']


def check_inference(path, inputs, tmp_path, full):
    from mmaction.apis import inference_recognizer, init_recognizer
    from mmaction.registry import MODELS
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(path)
    assert 'test_pipeline' in cfg, f'{path} has no test_pipeline'
    # a checkpoint of the config's model, as training would write it
    init_default_scope('mmaction')
    source = MODELS.build(cfg.model)
    source.init_weights()
    with torch.no_grad():
        for param in source.cls_head.parameters():
            param.normal_(0, 1)
    checkpoint = str(tmp_path / 'model.pth')
    torch.save({'state_dict': source.state_dict(),
                'meta': dict(epoch=1)}, checkpoint)
    if not full:
        cfg = one_view(cfg)
    model = init_recognizer(cfg if not full else path, checkpoint,
                            device='cpu')
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    result = inference_recognizer(model, video_input(model.cfg, inputs))
    classes = cfg.model.cls_head.num_classes
    score = result.pred_score
    assert score.shape == (classes, )
    # average_clips='prob': a distribution over the classes
    assert abs(float(score.sum()) - 1) < 1e-4 and float(score.min()) >= 0
    assert float(score.max()) > 1.5 / classes  # not uniform: trained head
    assert int(result.pred_label) == int(score.argmax())


@pytest.mark.parametrize('path', [
    p if any(s in osp.basename(p) for s in SMALL) else pytest.param(
        p, marks=pytest.mark.slow) for p in CONFIGS
], ids=osp.basename)
def test_inference_with_the_configs_own_pipeline(path, inputs, tmp_path):
    check_inference(path, inputs, tmp_path, full=True)


# One view of E3D-S for a video sampled every n-th frame and for a frame
# folder; the others take minutes on a loaded 2-core CPU.
FAST_ONE_VIEW = ('e3d_s_13x6x1_kinetics400-rgb.py', 'e3d_s_u13_sthv1-rgb.py')


@pytest.mark.parametrize('path', [
    p if osp.basename(p) in FAST_ONE_VIEW else pytest.param(
        p, marks=pytest.mark.slow) for p in CONFIGS if not any(
            s in osp.basename(p) for s in SMALL)
], ids=osp.basename)
def test_inference_one_view(path, inputs, tmp_path):
    check_inference(path, inputs, tmp_path, full=False)


def test_synthetic_config_pipeline_is_its_validation_clip():
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'e3d', 'e3d_xs_8x4x1_synthetic-motion.py'))
    assert cfg.test_pipeline == cfg.val_pipeline
    sample = [s for s in cfg.test_pipeline if s['type'] == 'SampleFrames']
    assert sample == [dict(type='SampleFrames', clip_len=8, frame_interval=4,
                           num_clips=1, test_mode=True)]


def test_causal_config_streams_through_init_recognizer(inputs):
    from mmaction.apis import init_recognizer

    from e3d_plugin.deploy import read_video, stream_video
    from e3d_plugin.models import StreamingRecognizer3D
    path = osp.join(ROOT, 'configs', 'e3d',
                    'e3d_xs-causal_8x4x1_synthetic-motion.py')
    model = init_recognizer(path, device='cpu')
    assert isinstance(model, StreamingRecognizer3D)
    assert model.backbone.causal
    frames = read_video(model.cfg, inputs['video'], 4)
    assert frames.shape == (1, 3, 6, 64, 64)
    scores, state = stream_video(model, frames, chunk=2)
    assert scores.shape == (1, 6, 10)
    assert float(state['head.frames']) == 6
