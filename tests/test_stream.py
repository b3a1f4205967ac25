"""Causal E3D and streaming: outputs depend on the past only, and a stream
fed in chunks of any size equals the whole clip."""
import pytest
import torch
import torch.nn as nn
from mmaction.registry import MODELS
from mmengine.registry import init_default_scope

from e3d_plugin.models import E3D, StreamingRecognizer3D, as_streaming
from tests.helpers import random_weights, stream_in_chunks

KINDS = ['conv', 'res', 'btn', 'dwbtn']


@pytest.fixture(autouse=True)
def _mmaction_scope():
    init_default_scope('mmaction')


def causal_backbone(structure, **kwargs):
    return random_weights(E3D(structure=structure, causal=True, **kwargs))


@pytest.mark.parametrize('kind', KINDS)
def test_changing_future_frames_leaves_past_outputs_unchanged(
        structure_of, kind):
    model = causal_backbone(
        structure_of(kind, se=0.25 if kind != 'conv' else 0.0),
        out_indices=(1, 2, -1))
    torch.manual_seed(1)
    x = torch.randn(2, 3, 7, 33, 31)
    changed = x.clone()
    changed[:, :, 4:] = torch.randn_like(changed[:, :, 4:]) * 3
    with torch.no_grad():
        before, after = model(x), model(changed)
    for a, b in zip(before, after):
        assert torch.equal(a[:, :, :4], b[:, :, :4])
        # the future does change the outputs from frame 4 on
        assert float((a[:, :, 4:] - b[:, :, 4:]).abs().max()) > 1e-3
    # non-causal: frame 3 sees frame 4 through the temporal kernels
    plain = random_weights(E3D(structure=structure_of(kind)))
    with torch.no_grad():
        diff = plain(x)[:, :, :4] - plain(changed)[:, :, :4]
    assert float(diff.abs().max()) > 1e-3


def test_causal_changes_no_weight_and_keeps_shapes(structure_of):
    blocks = structure_of('dwbtn', se=0.25, act='swish')
    plain, causal = E3D(structure=blocks), E3D(structure=blocks, causal=True)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in causal.state_dict().items()}
    causal.load_state_dict(random_weights(plain).state_dict())
    causal.eval()
    x = torch.randn(1, 3, 5, 32, 32)
    with torch.no_grad():
        assert causal(x).shape == plain(x).shape == (1, 32, 5, 4, 4)
    # the first frame of a causal temporal conv sees kt - 1 zero frames
    conv = causal.blocks[1][0].conv2
    assert conv.past == 2 and conv.conv.padding == (0, 1, 1)
    assert plain.blocks[1][0].conv2.conv.padding == (1, 1, 1)


def test_causal_squeeze_excitation_is_a_running_mean():
    from e3d_plugin.models.blocks import SqueezeExcitation
    torch.manual_seed(0)
    se = SqueezeExcitation(8, 0.5, causal=True).eval()
    x = torch.randn(1, 8, 4, 3, 3)
    with torch.no_grad():
        out = se(x)
        for t in range(4):
            pooled = x[:, :, :t + 1].mean((2, 3, 4), keepdim=True)
            gate = se.gate(se.fc2(se.act(se.fc1(pooled))))
            assert torch.allclose(out[:, :, t:t + 1], x[:, :, t:t + 1] * gate,
                                  atol=1e-6)


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('chunk', [1, 3, 7])
def test_stream_equals_whole_clip(structure_of, kind, chunk):
    model = causal_backbone(
        structure_of(kind, se=0.25 if kind != 'conv' else 0.0,
                     act='swish' if kind == 'btn' else None),
        out_indices=(1, -1))
    torch.manual_seed(2)
    x = torch.randn(2, 3, 7, 33, 31)  # odd sizes, strided blocks
    with torch.no_grad():
        whole = model(x)
    outs, state = stream_in_chunks(model, x, chunk)
    for index in range(2):
        streamed = torch.cat([o[index] for o in outs], 2)
        assert streamed.shape == whole[index].shape
        assert float(whole[index].abs().max()) > 0.1
        assert float((streamed - whole[index]).abs().max()) <= 1e-5
    assert float(state['frames']) == 7


def test_stream_in_mixed_chunks_and_state_is_not_changed(structure_of):
    model = causal_backbone(structure_of('dwbtn', se=0.25))
    x = torch.randn(1, 3, 9, 32, 32)
    with torch.no_grad():
        whole = model(x)
        state = model.init_stream(1)
        first, state = model.stream_step(x[:, :, :2], state)
        kept = {k: v.clone() for k, v in state.items()}
        second, after = model.stream_step(x[:, :, 2:7], state)
        # the step returns a new state and leaves the given one alone
        assert all(torch.equal(kept[k], state[k]) for k in state)
        third, _ = model.stream_step(x[:, :, 7:], after)
        again, _ = model.stream_step(x[:, :, 2:7], state)
    assert torch.equal(again, second)
    streamed = torch.cat([first, second, third], 2)
    assert float((streamed - whole).abs().max()) <= 1e-5


def test_state_shapes_and_size(structure_of):
    blocks = structure_of('dwbtn', se=0.25)
    model = E3D(structure=blocks, causal=True)
    state = model.init_stream(2, image_size=(33, 31))
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    # stem stride 2: 17x16; block 1 (kt 3, btn 32) strides 2 on its first
    # unit: its depthwise conv keeps 2 frames at 17x16, the second unit's
    # at 9x8; block 2 has kt 1 (no buffer); block 3 (kt 3, btn 48) at 5x4.
    assert shapes == {
        'frames': (1, ),
        'blocks.1.0.conv2': (2, 32, 2, 17, 16),
        'blocks.1.0.se': (2, 32, 1, 1, 1),
        'blocks.1.1.conv2': (2, 32, 2, 9, 8),
        'blocks.1.1.se': (2, 32, 1, 1, 1),
        'blocks.2.0.se': (2, 32, 1, 1, 1),
        'blocks.2.1.se': (2, 32, 1, 1, 1),
        'blocks.3.0.conv2': (2, 48, 2, 5, 4),
        'blocks.3.0.se': (2, 48, 1, 1, 1),
    }
    assert all(float(v.abs().sum()) == 0 for v in state.values())
    from e3d_plugin.deploy import state_nbytes
    assert state_nbytes(state) == 4 * (1 + 2 * 32 * 2 * 17 * 16 +
                                       2 * 32 * 2 * 9 * 8 + 2 * 48 * 2 * 5 *
                                       4 + 2 * (4 * 32 + 48))
    # a lazily started stream ends with the same shapes
    _, after = model.eval().stream_step(torch.randn(2, 3, 2, 33, 31),
                                        model.init_stream(2))
    assert {k: tuple(v.shape) for k, v in after.items()} == shapes
    assert float(after['frames']) == 2


def test_streaming_needs_a_causal_backbone(structure_of):
    model = E3D(structure=structure_of('res'))
    with pytest.raises(ValueError, match='causal=True'):
        model.init_stream(1)
    causal = E3D(structure=structure_of('res'), causal=True)
    with pytest.raises(ValueError, match=r'chunk of frames \(N, C, t, H, W\)'):
        causal.stream_step(torch.zeros(1, 3, 8, 8), causal.init_stream(1))
    with pytest.raises(ValueError, match="holds 'frames'"):
        causal.stream_step(torch.zeros(1, 3, 1, 8, 8), {})
    with pytest.raises(ValueError, match='batch_size must be a positive'):
        causal.init_stream(0)


def recognizer_cfg(structure, head='I3DHead', type='StreamingRecognizer3D',
                   causal=True):
    return dict(
        type=type,
        backbone=dict(type='E3D', structure=structure, causal=causal),
        cls_head=dict(type=head, in_channels=32, num_classes=5,
                      average_clips='prob'),
        data_preprocessor=dict(
            type='ActionDataPreprocessor', mean=[110., 120., 130.],
            std=[50., 60., 70.], format_shape='NCTHW'))


@pytest.mark.parametrize('head', ['I3DHead', 'X3DHead'])
def test_recognizer_stream_scores_are_those_of_the_clip_so_far(
        structure_of, head):
    model = random_weights(
        MODELS.build(recognizer_cfg(structure_of('dwbtn', se=0.25), head)))
    assert isinstance(model, StreamingRecognizer3D)
    torch.manual_seed(3)
    frames = torch.rand(2, 3, 6, 32, 32) * 255
    with torch.no_grad():
        scores = []
        state = model.init_stream(2)
        for start in (0, 1, 4):
            stop = {0: 1, 1: 4, 4: 6}[start]
            out, state = model.stream_step(frames[:, :, start:stop], state)
            scores.append(out)
        scores = torch.cat(scores, 1)
        assert scores.shape == (2, 6, 5)
        for t in range(1, 7):
            # the recognizer's own path: preprocessor, backbone, head
            data = model.data_preprocessor(
                dict(inputs=list(frames[:, None, :, :t]), data_samples=None))
            feats = model.extract_feat(data['inputs'])[0]
            clip_scores = model.cls_head(feats)
            assert float(clip_scores.abs().max()) > 0.1
            assert float((scores[:, t - 1] - clip_scores).abs().max()) <= 1e-5
    assert float(state['head.frames']) == 6
    assert tuple(state['head.sum'].shape) == (2, 32)


def test_as_streaming_and_what_cannot_stream(structure_of):
    plain_type = MODELS.build(
        recognizer_cfg(structure_of('res'), type='Recognizer3D'))
    weights = {k: v.clone() for k, v in plain_type.state_dict().items()}
    model = as_streaming(plain_type)
    assert isinstance(model, StreamingRecognizer3D)
    assert all(torch.equal(weights[k], v)
               for k, v in model.state_dict().items())
    not_causal = MODELS.build(recognizer_cfg(structure_of('res'),
                                             causal=False))
    with pytest.raises(ValueError, match='causal E3D backbone'):
        not_causal.init_stream(1)
    cfg = recognizer_cfg(structure_of('res'), head='X3DHead')
    cfg['cls_head']['spatial_type'] = 'max'
    with pytest.raises(ValueError, match="spatial_type='avg'"):
        MODELS.build(cfg).init_stream(1)
    with pytest.raises(ValueError, match='needs a Recognizer3D'):
        as_streaming(nn.Linear(2, 2))
