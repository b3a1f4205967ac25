"""ONNX export: parity with PyTorch for every preset and block kind, the
streaming step with explicit state, and the deploy tools' clear errors."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmaction.registry import MODELS
from mmengine.registry import init_default_scope

from e3d_plugin.deploy import (DeployError, RecognizerLogits, VideoFrames,
                               export_onnx, export_stream_onnx,
                               onnx_stream_video, ort_session, parity,
                               random_clips, randomize_weights, read_video,
                               stream_video)
from e3d_plugin import PRESETS, get_preset
from tests.helpers import ROOT, load_tool

pytest.importorskip('onnxruntime')

CAUSAL_CONFIG = osp.join(ROOT, 'configs', 'e3d',
                         'e3d_xs-causal_8x4x1_synthetic-motion.py')
PLAIN_CONFIG = osp.join(ROOT, 'configs', 'e3d',
                        'e3d_xs_8x4x1_synthetic-motion.py')


@pytest.fixture(autouse=True)
def _mmaction_scope():
    init_default_scope('mmaction')


def recognizer(backbone, in_channels, head='I3DHead'):
    return MODELS.build(
        dict(
            type='StreamingRecognizer3D',
            backbone=dict(type='E3D', **backbone),
            cls_head=dict(type=head, in_channels=in_channels, num_classes=7,
                          average_clips='prob'),
            data_preprocessor=dict(
                type='ActionDataPreprocessor', mean=[114.75] * 3,
                std=[57.38] * 3, format_shape='NCTHW')))


def export_and_compare(model, tmp_path, clip, name='model.onnx', **kwargs):
    randomize_weights(model, clip, seed=1)
    path = export_onnx(model, str(tmp_path / name), clip, **kwargs)
    clips = random_clips(clip, batch=kwargs.get('batch', 1), count=2,
                         seed=2)
    result = parity(ort_session(path), model, clips)
    with torch.no_grad():
        largest = max(
            float(RecognizerLogits(model)(c).abs().max()) for c in clips)
    return result, largest


# E3D-M and E3D-L take minutes to trace on a loaded 2-core CPU
@pytest.mark.parametrize('arch', [
    arch if arch in ('E3D-XS', 'E3D-S') else pytest.param(
        arch, marks=pytest.mark.slow) for arch in sorted(PRESETS)
])
def test_onnx_parity_every_preset(tmp_path, arch):
    torch.manual_seed(0)
    model = recognizer(dict(arch=arch), get_preset(arch).out_channels,
                       head='X3DHead')
    result, largest = export_and_compare(model, tmp_path, (4, 32, 32))
    # logits of order 1 (random weights with measured norm statistics)
    assert largest > 0.3
    assert result['same_top1'] and result['clips'] == 2
    # 1e-4, or a few times PyTorch's own float32 error where that is larger:
    # seen here, E3D-L (167 layers) at this clip: PyTorch float32 1.1e-4
    # from float64, onnxruntime 2.0e-4, the two 2.5e-4 apart
    assert result['max_abs_diff'] <= max(1e-4, 4 * float32_error(
        model, random_clips((4, 32, 32), batch=1, count=2, seed=2)))
    if arch != 'E3D-L':
        assert result['max_abs_diff'] <= 1e-4


def float32_error(model, clips):
    """Largest abs difference of the logits between the model in float32
    and in float64 on ``clips``: the rounding error of float32 itself."""
    exact = RecognizerLogits(copy.deepcopy(model).double()).eval()
    rounded = RecognizerLogits(model).eval()
    with torch.no_grad():
        return max(float((rounded(c).double() - exact(c.double())).abs().max())
                   for c in clips)


@pytest.mark.parametrize('kind,causal', [('conv', False), ('res', False),
                                         ('btn', False), ('dwbtn', False),
                                         ('dwbtn', True)])
def test_onnx_parity_every_block_kind(tmp_path, structure_of, kind, causal):
    # SE (sigmoid gate) and swish in every residual kind
    blocks = structure_of(kind, se=0.25 if kind != 'conv' else 0.0,
                          act='swish')
    model = recognizer(dict(structure=blocks, causal=causal), 32)
    result, largest = export_and_compare(model, tmp_path, (5, 33, 31))
    assert largest > 0.3
    assert result['max_abs_diff'] <= 1e-4 and result['same_top1']


def test_onnx_dynamic_batch(tmp_path, structure_of):
    model = recognizer(dict(structure=structure_of('dwbtn', se=0.25)), 32)
    result, _ = export_and_compare(model, tmp_path, (4, 32, 32),
                                   dynamic_batch=True)
    assert result['max_abs_diff'] <= 1e-4
    session = ort_session(str(tmp_path / 'model.onnx'))
    clip = random_clips((4, 32, 32), batch=3, count=1)[0]
    got = session.run(['logits'], {'clip': clip.numpy()})[0]
    with torch.no_grad():
        expected = RecognizerLogits(model)(clip).numpy()
    assert got.shape == (3, 7)
    assert np.abs(got - expected).max() <= 1e-4


def test_export_refuses_bad_settings(tmp_path, structure_of):
    model = recognizer(dict(structure=structure_of('res')), 32)
    with pytest.raises(DeployError, match='clip must be three positive'):
        export_onnx(model, str(tmp_path / 'm.onnx'), (0, 32, 32))
    with pytest.raises(DeployError, match='opset must be an int in 11..20'):
        export_onnx(model, str(tmp_path / 'm.onnx'), (2, 32, 32), opset=7)


def write_video(path, frames=12, size=64, label=1):
    from e3d_plugin.datasets.synthetic_motion import render
    from e3d_plugin.datasets.synthetic_motion import write_video as write
    write(str(path), render(np.random.default_rng(label), label, frames,
                            size), 8)
    return str(path)


def test_video_frames_in_chunks_are_the_whole_video(tmp_path):
    from mmengine.config import Config
    cfg = Config.fromfile(CAUSAL_CONFIG)
    path = write_video(tmp_path / 'v.mp4', 40, 64)
    whole = read_video(cfg, path, 2)
    assert whole.shape == (1, 3, 20, 64, 64)
    video = VideoFrames(cfg, path, 2)
    assert len(video) == 20
    assert torch.equal(video.decode(0, 20), whole)
    for size, block in ((1, None), (3, None), (3, 4), (7, 7), (20, None),
                        (50, None)):
        parts = list(video.chunks(size, block))
        starts = [start for start, _ in parts]
        assert starts == list(range(0, 20, size))
        assert all(p.shape[2] == min(size, 20 - s) for s, p in parts)
        assert torch.equal(torch.cat([p for _, p in parts], 2), whole)
    assert torch.equal(VideoFrames(cfg, path, 2, max_frames=5).decode(0, 5),
                       whole[:, :, :5])
    with pytest.raises(DeployError, match='chunk must be a positive int'):
        next(video.chunks(0))
    with pytest.raises(DeployError, match='no frames 20..21 in the 20'):
        video.decode(20, 21)


def test_stream_step_onnx_over_a_video(tmp_path, structure_of):
    from mmengine.config import Config
    cfg = Config.fromfile(CAUSAL_CONFIG)
    video = read_video(cfg, write_video(tmp_path / 'v.mp4', 12, 64), 2)
    # resized to short side 64 and centre-cropped, every 2nd frame
    assert video.shape == (1, 3, 6, 64, 64)
    assert 0 <= float(video.min()) and float(video.max()) <= 255
    model = recognizer(
        dict(structure=structure_of('dwbtn', se=0.25, act='swish'),
             causal=True), 32)
    randomize_weights(model, (6, 64, 64), seed=3)
    for chunk in (1, 3):
        path = str(tmp_path / f'step{chunk}.onnx')
        start = export_stream_onnx(model, path, (64, 64), chunk=chunk)
        session = ort_session(path)
        names = [i.name for i in session.get_inputs()]
        assert names == ['frames'] + [f'state.{k}' for k in start]
        assert [o.name for o in session.get_outputs()] == (
            ['scores'] + [f'next.{k}' for k in start])
        got = onnx_stream_video(session, start, video, chunk)
        expected, _ = stream_video(model, video, chunk)
        assert got.shape == (1, 6, 7)
        assert float(expected.abs().max()) > 0.3
        assert float((got - expected).abs().max()) <= 1e-4
        with torch.no_grad():
            whole = RecognizerLogits(model)(video)
        assert float((got[:, -1] - whole).abs().max()) <= 1e-4


def run_tool(name, argv, capsys):
    tool = load_tool(osp.join(ROOT, 'tools', 'deploy', name + '.py'))
    code = tool.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_export_tool_checks_and_times(tmp_path, capsys):
    video = write_video(tmp_path / 'v.mp4', 32, 64)
    code, out, err = run_tool('export_onnx', [
        CAUSAL_CONFIG, '--out', str(tmp_path / 'xs.onnx'), '--video', video,
        '--stream-out', str(tmp_path / 'step.onnx'), '--rounds', '2'
    ], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert 'no checkpoint: random weights (seed 0)' in lines
    assert any(line.startswith(
        f'exported {tmp_path / "xs.onnx"} for clips of 1x3x8x64x64')
        for line in lines)
    parity_lines = [line for line in lines if line.startswith('parity')]
    assert len(parity_lines) == 2
    assert all(line.endswith('same top-1: True -> ok')
               for line in parity_lines)
    assert any(line.startswith('latency per clip, 2 alternating rounds')
               for line in lines)
    stream_line = [line for line in lines if 'step.onnx' in line][0]
    assert 'one step of 1 frame(s), 8 state tensors' in stream_line
    assert stream_line.endswith('same top-1 after every frame: True -> ok')
    assert osp.getsize(tmp_path / 'xs.onnx') > 100_000


@pytest.fixture
def mismatched_checkpoint(tmp_path):
    """A checkpoint of another structure than E3D-XS."""
    other = recognizer(dict(arch='E3D-S'), 512)
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': other.state_dict()}, path)
    return str(path)


def xs_checkpoint(tmp_path):
    from e3d_plugin.deploy import build_recognizer
    model = build_recognizer(CAUSAL_CONFIG)
    path = tmp_path / 'xs.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    return str(path)


@pytest.mark.parametrize('tool,argv,message', [
    ('export_onnx', ['{config}', '{mismatch}', '--out', '{tmp}/m.onnx'],
     "error: checkpoint '{mismatch}' does not match the config's model: "),
    ('export_onnx', ['{config}', '--out', '{tmp}/m.onnx', '--clip', '8', '0',
                     '64'],
     'error: clip must be three positive integers T H W, got (8, 0, 64)'),
    ('export_onnx', ['{config}', '--out', '{tmp}/m.onnx', '--video',
                     '{tmp}/none.mp4'],
     "error: video '{tmp}/none.mp4' does not exist"),
    ('export_onnx', ['{config}', '{tmp}/none.pth', '--out', '{tmp}/m.onnx'],
     "error: checkpoint '{tmp}/none.pth' does not exist"),
    ('export_onnx', ['{tmp}/none.py', '--out', '{tmp}/m.onnx'],
     "error: config file '{tmp}/none.py' does not exist"),
    ('export_onnx', ['{config}', '--out', '{tmp}/m.onnx', '--opset', '3'],
     'error: opset must be an int in 11..20, got 3'),
    ('export_onnx', ['{config}'], 'error: the following arguments are '
     'required: --out (see --help)'),
    ('stream', ['{config}', '{xs}', '{tmp}/none.mp4'],
     "error: video '{tmp}/none.mp4' does not exist"),
    ('stream', ['{config}', '{mismatch}', '{video}'],
     "error: checkpoint '{mismatch}' does not match the config's model: "),
    ('stream', ['{plain}', '{xs}', '{video}'],
     'error: model: model.backbone: streaming needs a causal E3D backbone'),
    ('stream', ['{config}', '{xs}', '{video}', '--chunk', '0'],
     'error: --chunk must be >= 1'),
    ('stream', ['{config}', '{xs}', '{video}', '--compare-frames', '-1'],
     'error: --compare-frames must be >= 0'),
    ('stream', ['{config}', '{xs}', '{notvideo}'],
     "error: cannot decode video '{notvideo}'"),
])
def test_tools_bad_input_one_line(tmp_path, capsys, mismatched_checkpoint,
                                  tool, argv, message):
    names = dict(config=CAUSAL_CONFIG, plain=PLAIN_CONFIG, tmp=str(tmp_path),
                 mismatch=mismatched_checkpoint)
    if any('{xs}' in a for a in argv):
        names['xs'] = xs_checkpoint(tmp_path)
    if any('{video}' in a for a in argv):
        names['video'] = write_video(tmp_path / 'v.mp4', 8, 64)
    if any('{notvideo}' in a for a in argv):
        names['notvideo'] = str(tmp_path / 'text.mp4')
        (tmp_path / 'text.mp4').write_text('not a video')
    argv = [a.format(**names) for a in argv]
    try:
        code, out, err = run_tool(tool, argv, capsys)
    except SystemExit as e:  # argparse usage errors
        code = e.code
        out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(message.format(**names)), lines[0]


def test_stream_tool_prints_every_frame(tmp_path, capsys):
    checkpoint = xs_checkpoint(tmp_path)
    video = write_video(tmp_path / 'v.mp4', 20, 64)
    label_map = tmp_path / 'names.txt'
    label_map.write_text(''.join(f'class{i}\n' for i in range(10)))
    code, out, err = run_tool(
        'stream', [CAUSAL_CONFIG, checkpoint, video, '--every', '2',
                   '--label-map', str(label_map)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    # 20 frames every 4th: 5 frames; printed after frames 2, 4 and the last
    assert lines[0] == (f'{video}: 5 frames (every 4), 64x64, streamed 1 at '
                        'a time')
    frames = [line for line in lines if line.startswith('frame')]
    assert [line.split(':')[0] for line in frames] == [
        'frame    2 (video frame    4)', 'frame    4 (video frame   12)',
        'frame    5 (video frame   16)']
    # two named classes per line, probabilities from the softmax
    top = frames[0].split(': ', 1)[1].split(', ')
    assert len(top) == 2 and all(t.startswith('class') for t in top)
    probs = [float(t.split()[1]) for t in top]
    assert 0 < probs[1] <= probs[0] <= 1
    last = lines[-1]
    assert 'ms per new frame' in last and 'state 745.0 KB' in last
    diff = float(last.rsplit('max abs diff ', 1)[1])
    assert diff <= 1e-5


def test_stream_tool_decodes_in_blocks(tmp_path, capsys, monkeypatch):
    from e3d_plugin.deploy import video as video_module
    checkpoint = xs_checkpoint(tmp_path)
    # 120 video frames every 4th: 30 frames, more than one block of 16
    video = write_video(tmp_path / 'v.mp4', 120, 64)
    decoded = []
    decode = video_module.VideoFrames.decode

    def spy(self, start, stop):
        frames = decode(self, start, stop)
        decoded.append(frames.shape[2])
        return frames

    monkeypatch.setattr(video_module.VideoFrames, 'decode', spy)
    runs = {}
    for compare in ('30', '29'):
        decoded.clear()
        code, out, err = run_tool(
            'stream', [CAUSAL_CONFIG, checkpoint, video, '--every', '10',
                       '--compare-frames', compare], capsys)
        assert code == 0, err
        assert decoded == [16, 14]
        lines = out.splitlines()
        assert lines[0] == (f'{video}: 30 frames (every 4), 64x64, '
                            'streamed 1 at a time')
        runs[compare] = [line for line in lines if line.startswith('frame')]
        last = lines[-1]
        if compare == '30':
            assert float(last.rsplit('max abs diff ', 1)[1]) <= 1e-5
        else:
            assert last.endswith('the whole-clip check is skipped for more '
                                 'than 29 frames (--compare-frames)')
    assert [line.split(':')[0] for line in runs['30']] == [
        'frame   10 (video frame   36)', 'frame   20 (video frame   76)',
        'frame   30 (video frame  116)']
    assert runs['30'] == runs['29']
