"""Run a causal E3D recognizer over a video as a stream, in PyTorch or as an
ONNX graph whose state tensors are explicit inputs and outputs.

The exported step takes ``frames`` (``(N, 3, t, H, W)`` raw pixels of ``t``
new frames, ``t`` fixed at export) and one input ``state.<key>`` per state
tensor; it returns ``scores`` (``(N, t, classes)``, the class scores after
each new frame) and ``next.<key>`` for each state tensor, to be fed back at
the next step. The keys and the zero start state are those of
``recognizer.init_stream(N, (H, W))``.
"""
import torch
import torch.nn as nn

from .errors import DeployError, check_positive_int
from .export import check_input_size, write_onnx


def stream_video(recognizer, frames, chunk=1, state=None):
    """Feed ``frames`` (``(N, C, T, H, W)``) to ``recognizer.stream_step``
    in chunks of ``chunk`` frames; return the scores after every frame
    ``(N, T, classes)`` and the final state."""
    if not isinstance(chunk, int) or chunk < 1:
        raise DeployError(f'chunk must be a positive int, got {chunk!r}')
    if state is None:
        state = recognizer.init_stream(frames.shape[0])
    scores = []
    with torch.no_grad():
        for start in range(0, frames.shape[2], chunk):
            out, state = recognizer.stream_step(
                frames[:, :, start:start + chunk], state)
            scores.append(out)
    return torch.cat(scores, 1), state


def state_nbytes(state):
    """Bytes held by the tensors of a stream state."""
    return sum(v.numel() * v.element_size() for v in state.values())


class StreamStepModule(nn.Module):
    """``recognizer.stream_step`` as a function of tensors only (frames,
    then the state tensors in ``keys`` order), for ONNX export."""

    def __init__(self, recognizer, keys):
        super().__init__()
        self.recognizer = recognizer
        self.keys = list(keys)

    def forward(self, frames, *states):
        """Scores of the new frames, then the next state tensors."""
        scores, state = self.recognizer.stream_step(
            frames, dict(zip(self.keys, states)))
        return (scores, ) + tuple(state[key] for key in self.keys)


def export_stream_onnx(recognizer, path, image_size, chunk=1, batch=1,
                       opset=17):
    """Export one streaming step of ``chunk`` frames of ``image_size``
    (``(H, W)``) to ``path``; return the start state (its keys name the
    ONNX inputs ``state.<key>``)."""
    recognizer.check_streamable()
    check_positive_int('chunk', chunk)
    check_input_size((chunk, ) + tuple(image_size), batch)
    state = recognizer.init_stream(batch, tuple(image_size))
    keys = list(state)
    module = StreamStepModule(recognizer, keys).eval()
    frames = torch.zeros((batch, 3, chunk) + tuple(image_size))

    def write(target):
        with torch.no_grad():
            torch.onnx.export(
                module, (frames, ) + tuple(state[k] for k in keys), target,
                input_names=['frames'] + [f'state.{k}' for k in keys],
                output_names=['scores'] + [f'next.{k}' for k in keys],
                opset_version=opset, do_constant_folding=True, dynamo=False)

    write_onnx(path, write)
    return state


def onnx_stream_video(session, start_state, frames, chunk=1):
    """Run the exported step over ``frames`` (``(N, C, T, H, W)``, ``T`` a
    multiple of ``chunk``) with onnxruntime, feeding each step's state to
    the next; return the scores after every frame ``(N, T, classes)``."""
    keys = list(start_state)
    state = [start_state[k].cpu().numpy() for k in keys]
    outputs = ['scores'] + [f'next.{k}' for k in keys]
    scores = []
    total = frames.shape[2]
    if total % chunk:
        raise DeployError(
            f'the video has {total} frames, not a multiple of the exported '
            f'chunk of {chunk}')
    for start in range(0, total, chunk):
        feed = {'frames': frames[:, :, start:start + chunk].cpu().numpy()}
        feed.update({f'state.{k}': v for k, v in zip(keys, state)})
        out = session.run(outputs, feed)
        scores.append(torch.from_numpy(out[0]))
        state = out[1:]
    return torch.cat(scores, 1)


__all__ = [
    'stream_video', 'state_nbytes', 'StreamStepModule',
    'export_stream_onnx', 'onnx_stream_video'
]
