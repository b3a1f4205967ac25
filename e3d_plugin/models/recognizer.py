"""A ``Recognizer3D`` that also classifies a live video frame by frame.

:class:`StreamingRecognizer3D` is mmaction2's ``Recognizer3D`` (same
training, testing and weights, so checkpoints load either way) with two more
methods for a causal E3D backbone (``backbone.causal=True``):
``state = recognizer.init_stream(batch_size)`` and
``scores, state = recognizer.stream_step(frames, state)``. The head's global
average pooling becomes a running mean over the frames seen so far, so the
scores after frame ``t`` are those the recognizer gives for the clip of
frames ``0..t``. Configs select it with ``model.type='StreamingRecognizer3D'``;
:func:`as_streaming` turns an existing ``Recognizer3D`` into one in place.
"""
import torch
import torch.nn as nn
from mmaction.models.recognizers import Recognizer3D
from mmaction.registry import MODELS

#: Heads whose forward starts with a global average pooling, so that a
#: running mean of the features can stand for the pooled clip.
STREAMABLE_HEADS = ('I3DHead', 'X3DHead')


def _head_pool(head):
    """The head's global pooling layer, checked to be an average."""
    pool = getattr(head, 'avg_pool', None) or getattr(head, 'pool', None)
    if type(head).__name__ not in STREAMABLE_HEADS or not isinstance(
            pool, nn.AdaptiveAvgPool3d):
        raise ValueError(
            f'cls_head: streaming needs one of {", ".join(STREAMABLE_HEADS)} '
            "with spatial_type='avg' (its pooling becomes a running mean), "
            f'got {type(head).__name__}')
    return pool


@MODELS.register_module()
class StreamingRecognizer3D(Recognizer3D):
    """``Recognizer3D`` with :meth:`init_stream` / :meth:`stream_step` for a
    causal E3D backbone and an average-pooling head (``I3DHead``,
    ``X3DHead``).

    The frames given to :meth:`stream_step` are raw pixels, as the test
    pipeline gives them: the data preprocessor's normalisation (and
    ``to_rgb``) is applied here. Scores are the head's class scores
    (logits, before the softmax of ``average_clips='prob'``).
    """

    def check_streamable(self):
        """Raise ``ValueError`` naming the part that cannot stream."""
        if not getattr(self.backbone, 'causal', False):
            raise ValueError(
                'model.backbone: streaming needs a causal E3D backbone '
                '(model.backbone.causal=True, trained that way)')
        if self.with_neck:
            raise ValueError('model.neck: streaming does not support necks')
        _head_pool(self.cls_head)

    def init_stream(self, batch_size, image_size=None):
        """The state at the start of a stream: the backbone's buffers under
        ``'backbone.*'`` and the head's running sum of per-frame pooled
        features (``'head.sum'``, ``(N, C)``) and frame count
        (``'head.frames'``, ``(1, )``). See ``E3D.init_stream``."""
        self.check_streamable()
        state = {
            f'backbone.{key}': value
            for key, value in self.backbone.init_stream(
                batch_size, image_size).items()
        }
        frames = state['backbone.frames']
        state['head.frames'] = torch.zeros_like(frames)
        if image_size is not None:
            state['head.sum'] = frames.new_zeros(
                (batch_size, self.backbone.feat_dim))
        return state

    def normalize(self, frames):
        """Apply the data preprocessor's ``to_rgb`` and mean / std."""
        preprocessor = self.data_preprocessor
        if getattr(preprocessor, 'to_rgb', False):
            frames = frames.flip(1)
        if getattr(preprocessor, '_enable_normalize', False):
            frames = (frames - preprocessor.mean) / preprocessor.std
        return frames

    def stream_step(self, frames, state):
        """Class scores after each new frame of ``frames``.

        Args:
            frames (Tensor): ``(N, C, t, H, W)`` raw pixels of ``t >= 1`` new
                frames.
            state (dict): :meth:`init_stream`'s or the previous step's.

        Returns:
            tuple: ``scores`` ``(N, t, num_classes)``, the scores the
            recognizer gives for the clip of all frames up to each new one,
            and the new state (``state`` is not changed).
        """
        self.check_streamable()
        if not isinstance(state, dict) or 'head.frames' not in state:
            raise ValueError(
                "state must be the dict init_stream() or the previous "
                "stream_step() returned (it holds 'head.frames')")
        prefix = 'backbone.'
        feats, backbone_state = self.backbone.stream_step(
            self.normalize(frames), {
                key[len(prefix):]: value
                for key, value in state.items() if key.startswith(prefix)
            })
        if isinstance(feats, tuple):
            feats = feats[-1]
        n, c, t = feats.shape[:3]
        pooled = feats.mean((3, 4))
        total = state.get('head.sum')
        sums = pooled.cumsum(2)
        if total is not None:
            sums = sums + total.unsqueeze(2)
        count = state['head.frames'] + torch.arange(
            1, t + 1, device=feats.device, dtype=feats.dtype)
        running = (sums / count).transpose(1, 2).reshape(n * t, c, 1, 1, 1)
        # The head's pooling of a 1x1x1 map is the identity.
        scores = self.cls_head(running).view(n, t, -1)
        new_state = {prefix + key: value
                     for key, value in backbone_state.items()}
        new_state['head.sum'] = sums[:, :, -1]
        new_state['head.frames'] = state['head.frames'] + t
        return scores, new_state


def as_streaming(recognizer):
    """Give a ``Recognizer3D`` (with a causal E3D backbone) the streaming
    methods, in place, and return it; weights and outputs are unchanged."""
    if not isinstance(recognizer, Recognizer3D):
        raise ValueError(
            'model: streaming needs a Recognizer3D, got '
            f'{type(recognizer).__name__}')
    if not isinstance(recognizer, StreamingRecognizer3D):
        recognizer.__class__ = StreamingRecognizer3D
    recognizer.check_streamable()
    return recognizer


__all__ = ['StreamingRecognizer3D', 'as_streaming', 'STREAMABLE_HEADS']
