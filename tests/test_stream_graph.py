"""StaticStream: a causal E3D streamed with static buffers (eager here, a
CUDA graph on a GPU) gives the functional stream's and the whole clip's
outputs, keeps its buffers, restarts videos where that is exact, and
refuses what it cannot run."""
import pytest
import torch

from e3d_plugin.models import E3D, StaticStream
from tests.helpers import random_weights, stream_in_chunks

SIZE = (33, 31)  # odd: strided blocks round up


def backbone(structure_of, se=0.0, **kwargs):
    return random_weights(
        E3D(structure=structure_of('dwbtn', se=se), causal=True, **kwargs))


def as_tuple(feats):
    return feats if isinstance(feats, tuple) else (feats, )


def max_diff(a, b):
    return float((a - b).abs().max())


@pytest.mark.parametrize('se', [0.0, 0.25])
@pytest.mark.parametrize('chunk,out_indices,channels_last', [
    (1, (-1, ), False), (2, (1, -1), False), (2, (-1, ), True)])
def test_static_stream_equals_functional_and_whole_clip(
        structure_of, se, chunk, out_indices, channels_last):
    model = backbone(structure_of, se, out_indices=out_indices,
                     channels_last=channels_last)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 6, *SIZE)
    with torch.no_grad():
        whole = as_tuple(model(x))
    expected, expected_state = stream_in_chunks(model, x, chunk)
    stream = StaticStream(model, 2, SIZE, chunk=chunk)
    assert stream.graph is False and stream.per_video_reset
    pointers = {k: v.data_ptr() for k, v in stream.state.items()}
    input_pointer = stream.input.data_ptr()
    outs, feature_pointers = [], set()
    for step, start in enumerate(range(0, 6, chunk)):
        feats = as_tuple(stream.step(x[:, :, start:start + chunk]))
        feature_pointers.add(tuple(f.data_ptr() for f in feats))
        for got, want in zip(feats, as_tuple(expected[step])):
            assert max_diff(got, want) <= 1e-6
        outs.append(tuple(f.clone() for f in feats))
        # the state is updated in place: same storage at every step
        assert {k: v.data_ptr() for k, v in stream.state.items()} == pointers
        assert stream.input.data_ptr() == input_pointer
    # the features are one set of buffers, overwritten by each step
    assert len(feature_pointers) == 1
    for index, want in enumerate(whole):
        streamed = torch.cat([o[index] for o in outs], 2)
        assert streamed.shape == want.shape
        assert float(want.abs().max()) > 0.1
        assert max_diff(streamed, want) <= 1e-5
    assert set(stream.state) == set(expected_state)
    for key, value in expected_state.items():
        assert max_diff(stream.state[key], value) <= 1e-6
    assert stream.state['frames'].tolist() == [6, 6]
    if se:
        assert float(stream.state['blocks.1.0.se'].abs().max()) > 0.1


def test_features_are_overwritten_unless_copied(structure_of):
    model = backbone(structure_of)
    stream = StaticStream(model, 1, SIZE)
    assert stream.features() is None
    torch.manual_seed(2)
    first = torch.randn(1, 3, 1, *SIZE)
    out = stream.step(first)
    kept = stream.features()  # a copy by default
    copied = stream.step(torch.randn(1, 3, 1, *SIZE), copy=True)
    assert copied.data_ptr() != out.data_ptr()
    assert torch.equal(copied, out)  # the buffer holds the second step's
    assert max_diff(kept, out) > 1e-3  # the copy kept the first step's
    assert stream.features(copy=False) is out


def test_reset_starts_new_streams(structure_of):
    model = backbone(structure_of, se=0.25)
    torch.manual_seed(3)
    x = torch.randn(2, 3, 4, *SIZE)
    with torch.no_grad():
        whole = model(x)
    stream = StaticStream(model, 2, SIZE, chunk=2)
    stream.step(torch.randn(2, 3, 2, *SIZE))
    assert stream.state['frames'].tolist() == [2, 2]
    pointers = {k: v.data_ptr() for k, v in stream.state.items()}
    stream.reset()
    assert all(float(v.abs().max()) == 0 for v in stream.state.values())
    assert {k: v.data_ptr() for k, v in stream.state.items()} == pointers
    outs = [stream.step(x[:, :, s:s + 2], copy=True) for s in (0, 2)]
    assert max_diff(torch.cat(outs, 2), whole) <= 1e-5
    # naming every video is a full reset, allowed with SE too
    stream.reset([1, 0])
    assert all(float(v.abs().max()) == 0 for v in stream.state.values())


@pytest.mark.parametrize('se', [0.0, 0.25])
def test_batch_of_videos_with_one_restarted(structure_of, se):
    """A restarted video gives its new clip's outputs from its first frame,
    the others go on with theirs; with squeeze-excitation too, whose
    running mean divides by each video's own frame count."""
    model = backbone(structure_of, se=se)
    torch.manual_seed(4)
    x = torch.randn(3, 3, 8, *SIZE)
    new = torch.randn(1, 3, 4, *SIZE)
    with torch.no_grad():
        whole, whole_new = model(x), model(new)
    stream = StaticStream(model, 3, SIZE)
    assert stream.per_video_reset
    outs = [stream.step(x[:, :, t:t + 1], copy=True) for t in range(4)]
    assert max_diff(torch.cat(outs, 2), whole[:, :, :4]) <= 1e-5
    untouched = {k: v[[0, 2]].clone() for k, v in stream.state.items()}
    stream.reset(1)
    for key, value in stream.state.items():
        assert float(value[1].abs().max()) == 0
        assert torch.equal(value[[0, 2]], untouched[key])
    assert stream.state['frames'].tolist() == [4, 0, 4]
    def after_restart(stream):
        """Video 1 starts a new video; videos 0 and 2 go on with theirs."""
        outs = []
        for t in range(4):
            chunk = x[:, :, 4 + t:5 + t].clone()
            chunk[1] = new[0, :, t:t + 1]
            outs.append(stream.step(chunk, copy=True))
        return torch.cat(outs, 2)

    streamed = after_restart(stream)
    assert max_diff(streamed[[0, 2]], whole[[0, 2], :, 4:]) <= 1e-5
    assert max_diff(streamed[1], whole_new[0]) <= 1e-5
    assert stream.state['frames'].tolist() == [8, 4, 8]
    # without the restart, video 1 would differ from the new video's start
    assert max_diff(whole_new[0, :, :1], whole[1, :, 4:5]) > 1e-2
    if se:
        # with the batch's count kept for the restarted video (one count
        # shared by the batch), its outputs would be off
        shared = StaticStream(model, 3, SIZE)
        for t in range(4):
            shared.step(x[:, :, t:t + 1])
        shared.reset(1)
        shared.state['frames'].fill_(4)
        assert max_diff(after_restart(shared)[1], whole_new[0]) > 1e-3


def test_bad_indices_are_refused_before_anything_changes(structure_of):
    stream = StaticStream(backbone(structure_of, se=0.25), 3, SIZE)
    stream.step(torch.randn(3, 3, 1, *SIZE))
    before = {k: v.clone() for k, v in stream.state.items()}
    for bad, match in (([3], 'out of range'), (-1, 'out of range'),
                       ([1, 3], 'out of range'), ('1', 'ints'),
                       ([1.0], 'ints'), (True, 'ints')):
        with pytest.raises(ValueError, match=match) as info:
            stream.reset(bad)
        assert len(str(info.value).splitlines()) == 1
    assert all(torch.equal(before[k], v) for k, v in stream.state.items())


def test_refusals_are_one_line(structure_of):
    def refused(match, call, *args, **kwargs):
        with pytest.raises(ValueError, match=match) as info:
            call(*args, **kwargs)
        assert len(str(info.value).splitlines()) == 1

    plain = random_weights(E3D(structure=structure_of('res')))
    refused('causal=True', StaticStream, plain, 1, SIZE)
    model = backbone(structure_of)
    refused('eval mode', StaticStream, model.train(), 1, SIZE)
    model.eval()
    model.blocks[1].train()  # one block left in training mode
    refused('eval mode', StaticStream, model, 1, SIZE)
    model.eval()
    refused('graph=True needs a CUDA device', StaticStream, model, 1, SIZE,
            graph=True)
    refused('batch_size', StaticStream, model, 0, SIZE)
    refused('image_size', StaticStream, model, 1, (33, ))
    refused('image_size', StaticStream, model, 1, (33, 0))
    refused('chunk must be', StaticStream, model, 1, SIZE, chunk=0)
    stream = StaticStream(model, 2, SIZE, chunk=2)
    good = torch.zeros(2, 3, 2, *SIZE)
    for bad in (torch.zeros(2, 3, 1, *SIZE), torch.zeros(1, 3, 2, *SIZE),
                torch.zeros(2, 3, 2, 32, 31), good.double(),
                good.to('meta'), good.numpy()):
        refused(r'expects a chunk \(2, 3, 2, 33, 31\) float32 on cpu',
                stream.step, bad)
    model.train()
    refused('switched to training', stream.step, good)
    model.eval()
    assert stream.step(good).shape == (2, 32, 2, 5, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_graph_replays_the_stream(structure_of):
    model = backbone(structure_of, out_indices=(1, -1)).cuda()
    torch.manual_seed(5)
    x = torch.randn(3, 3, 8, *SIZE, device='cuda')
    with torch.no_grad():
        whole = model(x)
    stream = StaticStream(model, 3, SIZE)
    assert stream.graph is True
    # warm-up and capture leave a zero state
    assert all(float(v.abs().max()) == 0 for v in stream.state.values())
    pointers = {k: v.data_ptr() for k, v in stream.state.items()}
    outs = [stream.step(x[:, :, t:t + 1], copy=True) for t in range(8)]
    assert {k: v.data_ptr() for k, v in stream.state.items()} == pointers
    for index in range(2):
        streamed = torch.cat([o[index] for o in outs], 2)
        assert max_diff(streamed, whole[index]) <= 1e-4
    assert stream.state['frames'].tolist() == [8, 8, 8]
    stream.reset(2)
    assert stream.state['frames'].tolist() == [8, 8, 0]
    stream.reset()
    outs = [stream.step(x[:, :, t:t + 1], copy=True)[1] for t in range(8)]
    assert max_diff(torch.cat(outs, 2), whole[1]) <= 1e-4
