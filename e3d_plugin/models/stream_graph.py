"""Streaming a causal E3D with static buffers, and as a CUDA graph.

:meth:`E3D.stream_step <e3d_plugin.models.E3D.stream_step>` is functional:
each step allocates a new state dict. On a GPU a step of one frame is a few
hundred tiny kernels plus those allocations, so it costs the launches, not
the arithmetic (E3D-S at 160x160 on an H200: 13.5 ms per streamed frame
against 0.80 ms per frame of the whole clip). :class:`StaticStream` keeps
the input, the state and the features in buffers allocated once, updates
the state in place, and on CUDA captures the whole step (the copy of the
new state included) in a ``torch.cuda.CUDAGraph`` that each step replays:
one launch per step. On the CPU, or with ``graph=False``, the same in-place
step runs eagerly.

Many videos stream as one batch (``batch_size`` > 1); :meth:`StaticStream.
reset` restarts all of them, or single ones (a server taking a new video in
a slot): each video has its own frame count.
"""
import torch


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(x):
    if not isinstance(x, torch.Tensor):
        return type(x).__name__
    return (f'{tuple(x.shape)} {str(x.dtype).replace("torch.", "")} on '
            f'{x.device}')


class StaticStream:
    """A causal E3D backbone streamed with static buffers: fixed batch
    size, image size, chunk length, device and dtype (those of the
    backbone's parameters).

    Args:
        backbone (E3D): A causal backbone (``causal=True``) in eval mode,
            on its device. Do not move it or switch it to training
            afterwards; weights loaded in place (``load_state_dict``) are
            seen by the next step, the graph's included.
        batch_size (int): Videos streamed together (one per batch row).
        image_size (tuple[int, int]): ``(H, W)`` of the frames.
        chunk (int): New frames per step. Defaults to 1.
        graph (bool, optional): Capture the step in a CUDA graph and replay
            it. Defaults to True on a CUDA device, False elsewhere; True on
            another device is refused (there is no graph to capture).
        warmup (int): Eager steps run on a side stream before the capture
            (PyTorch's recipe; cuDNN and the allocator settle there).
            Defaults to 3.

    Attributes:
        input (Tensor): The static input ``(N, C, chunk, H, W)``.
        state (dict[str, Tensor]): The static state, keyed as
            ``backbone.init_stream`` keys it; every step updates these
            tensors in place (their storage never changes). ``'frames'``
            is ``(N, )`` here: each video's frames since its last
            :meth:`reset` (``init_stream`` gives one count ``(1, )``).
    """

    def __init__(self, backbone, batch_size, image_size, chunk=1, graph=None,
                 warmup=3):
        if not getattr(backbone, 'causal', False) or not hasattr(
                backbone, 'stream_step'):
            raise ValueError(
                'StaticStream needs a causal E3D backbone: build it with '
                'causal=True')
        if any(m.training for m in backbone.modules()):
            raise ValueError(
                'StaticStream needs the backbone in eval mode (in training '
                'mode its norms would update their statistics): call '
                'backbone.eval() first')
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(
                f'batch_size must be a positive int, got {batch_size!r}')
        if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
                or not all(_is_int(s) and s >= 1 for s in image_size)):
            raise ValueError(
                'image_size must be (H, W), two positive ints, got '
                f'{image_size!r}')
        if not _is_int(chunk) or chunk < 1:
            raise ValueError(f'chunk must be a positive int, got {chunk!r}')
        if not _is_int(warmup) or warmup < 1:
            raise ValueError(f'warmup must be a positive int, got {warmup!r}')
        param = next(backbone.parameters())
        self.device, self.dtype = param.device, param.dtype
        cuda = self.device.type == 'cuda'
        if graph is None:
            graph = cuda
        if graph and not cuda:
            raise ValueError(
                f'graph=True needs a CUDA device; the backbone is on '
                f'{self.device} (use graph=False: the same step, eager)')
        self.backbone = backbone
        self.batch_size = batch_size
        self.image_size = tuple(image_size)
        self.chunk = chunk
        self.graph = bool(graph)
        channels = backbone.structure[0].in_channels
        self.input = torch.zeros(
            (batch_size, channels, chunk) + self.image_size,
            device=self.device, dtype=self.dtype)
        self.state = backbone.init_stream(batch_size, self.image_size,
                                          self.device, self.dtype)
        # one frame count per video, so that videos restart one by one (a
        # causal squeeze-excitation divides its running sum by the count)
        self.state['frames'] = torch.zeros(batch_size, device=self.device,
                                           dtype=self.dtype)
        self._feats = None  # the last step's features (static buffers)
        self._graph = None
        self._graph_feats = None  # the captured step's outputs
        if self.graph:
            self._capture(warmup)
        self.reset()

    @property
    def per_video_reset(self):
        """Whether :meth:`reset` takes single videos: always True (each
        video has its own frame count)."""
        return True

    def _run(self):
        """One step on the static buffers: the features, the new state
        copied into ``self.state`` in place."""
        feats, new_state = self.backbone.stream_step(self.input, self.state)
        if set(new_state) != set(self.state):  # pragma: no cover
            raise RuntimeError('the stream state changed its keys')
        for key, value in new_state.items():
            self.state[key].copy_(value)
        return feats

    def _capture(self, warmup):
        # PyTorch's whole-network capture: warm up on a side stream, then
        # capture one step; its outputs become the static features.
        with torch.cuda.device(self.device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.no_grad(), torch.cuda.stream(side):
                for _ in range(warmup):
                    self._run()
            torch.cuda.current_stream().wait_stream(side)
            self._graph = torch.cuda.CUDAGraph()
            with torch.no_grad(), torch.cuda.graph(self._graph):
                self._graph_feats = self._run()

    def _check_chunk(self, chunk):
        buf = self.input
        if (not isinstance(chunk, torch.Tensor) or chunk.shape != buf.shape
                or chunk.dtype != buf.dtype or chunk.device != buf.device):
            raise ValueError(
                f'StaticStream.step expects a chunk {_describe(buf)}, got '
                f'{_describe(chunk)}')

    def step(self, chunk, copy=False):
        """Stream ``chunk`` (``(N, C, chunk, H, W)`` of the stepper's
        dtype, on its device) and return its features as
        :meth:`E3D.forward` returns them, for the new frames only.

        The features are the stepper's static buffers: the next step
        overwrites them (in both modes). ``copy=True`` returns clones.
        """
        self._check_chunk(chunk)
        if self.backbone.training:
            raise ValueError(
                'StaticStream needs the backbone in eval mode; it was '
                'switched to training after the stepper was built')
        self.input.copy_(chunk)
        if self._graph is not None:
            with torch.cuda.device(self.device):
                self._graph.replay()
            self._feats = self._graph_feats
        else:
            with torch.no_grad():
                feats = self._run()
            if self._feats is None:
                self._feats = feats
            elif isinstance(feats, tuple):
                for buf, value in zip(self._feats, feats):
                    buf.copy_(value)
            else:
                self._feats.copy_(feats)
        return self.features(copy)

    def features(self, copy=True):
        """The last step's features (clones unless ``copy=False``); None
        before the first step."""
        feats = self._feats
        if feats is None or not copy:
            return feats
        if isinstance(feats, tuple):
            return tuple(f.clone() for f in feats)
        return feats.clone()

    def reset(self, indices=None):
        """Start new streams: zero the whole state (``indices=None``), or
        the state of the videos (batch rows) ``indices`` only, their frame
        counts included, the others streaming on. A restarted video's
        outputs are those of its new clip from its first frame, also with
        squeeze-excitation (whose running mean divides by the video's own
        count).
        """
        if indices is None:
            for value in self.state.values():
                value.zero_()
            return
        rows = [indices] if _is_int(indices) else indices
        if (not isinstance(rows, (list, tuple, range))
                or not all(_is_int(i) for i in rows)):
            raise ValueError(
                'indices must be a video index or a list of them (ints), '
                f'got {indices!r}')
        rows = sorted(set(rows))
        if rows and (rows[0] < 0 or rows[-1] >= self.batch_size):
            raise ValueError(
                f'indices {indices!r} out of range: videos are '
                f'0..{self.batch_size - 1}')
        if not rows:
            return
        index = torch.tensor(rows, device=self.device)
        for value in self.state.values():
            value.index_fill_(0, index, 0)


__all__ = ['StaticStream']
