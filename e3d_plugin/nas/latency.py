"""Latency of a structure predicted from a per-layer lookup table.

As in FBNet and TinyNAS, a network's latency is predicted as the sum of the
latencies of its layers, each distinct layer shape being timed once, alone,
on the target device, and kept in a JSON table on disk. The search then
predicts a candidate's latency with a few dictionary look-ups; a layer shape
it has not seen yet is timed on the spot and added to the table.

A *layer* here is what the backbone runs as one piece (see
:mod:`e3d_plugin.models.blocks`):

* ``conv``: Conv3d - BN - optional activation (one ``ConvModule``);
* ``se``: a squeeze-excitation module;
* ``shortcut``: the identity shortcut of a residual unit (the sum, the
  1x2x2 average pooling of a strided unit) and the activation after it.

Latencies are milliseconds for one batch of ``batch_size`` clips, inference
mode. The table is only valid for the device, batch size and thread count
it was measured with; they are stored in the file, and a table measured
under other settings is not reused.

torch is imported only when something has to be measured.
"""
import json
import os
import os.path as osp
import platform
import time
from typing import NamedTuple, Optional

from ..structure import se_width

TABLE_FORMAT = 'e3d-latency-table'
TABLE_VERSION = 1


class Layer(NamedTuple):
    """One timed piece of a network; sizes are those of its input."""

    op: str
    in_channels: int
    out_channels: int
    kernel_t: int
    kernel: int
    stride: int
    groups: int
    frames: int
    height: int
    width: int
    act: Optional[str]

    def key(self):
        """The layer's key in the table file."""
        return '|'.join(str(v) for v in self)


def _ceil_half(value, stride):
    return (value - 1) // stride + 1


def block_layers(block, frames, height, width, act='relu'):
    """The layers of one block at input ``(frames, height, width)``, and
    its output height and width."""
    kind, cin, cout, k, kt, s, depth, btn, se, block_act = block
    act = block_act or act
    layers = []
    h, w = height, width
    for unit in range(depth):
        stride = s if unit == 0 else 1
        oh, ow = _ceil_half(h, stride), _ceil_half(w, stride)
        if kind == 'conv':
            layers.append(Layer('conv', cin, cout, kt, k, stride, 1, frames,
                                h, w, act))
        elif kind == 'res':
            layers.append(Layer('conv', cin, cout, kt, k, stride, 1, frames,
                                h, w, act))
            layers.append(Layer('conv', cout, cout, kt, k, 1, 1, frames, oh,
                                ow, None))
            if se:
                layers.append(Layer('se', cout, se_width(cout, se), 1, 1, 1,
                                    1, frames, oh, ow, None))
        else:
            groups = btn if kind == 'dwbtn' else 1
            layers.append(Layer('conv', cin, btn, 1, 1, 1, 1, frames, h, w,
                                act))
            layers.append(Layer('conv', btn, btn, kt, k, stride, groups,
                                frames, h, w, None if se else act))
            if se:
                layers.append(Layer('se', btn, se_width(btn, se), 1, 1, 1, 1,
                                    frames, oh, ow, act))
            layers.append(Layer('conv', btn, cout, 1, 1, 1, 1, frames, oh,
                                ow, None))
        if kind != 'conv':
            if cin == cout:
                layers.append(Layer('shortcut', cout, cout, 1, 1, stride, 1,
                                    frames, h, w, act))
            else:
                layers.append(Layer('act', cout, cout, 1, 1, 1, 1, frames,
                                    oh, ow, act))
        cin = cout
        h, w = oh, ow
    return layers, h, w


def structure_layers(structure, image_size=224, frames=16, act='relu'):
    """Every layer of ``structure`` for one clip, in network order."""
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    height, width = image_size
    layers = []
    for block in structure:
        block_list, height, width = block_layers(block, frames, height,
                                                 width, act)
        layers.extend(block_list)
    return layers


def _build_layer(layer):
    """The module a :class:`Layer` stands for (torch imported here)."""
    import torch.nn as nn
    from ..models.blocks import SqueezeExcitation

    def activation(name):
        if name is None:
            return nn.Identity()
        return nn.SiLU(inplace=True) if name == 'swish' else nn.ReLU(
            inplace=True)

    if layer.op == 'conv':
        kt, k = layer.kernel_t, layer.kernel
        return nn.Sequential(
            nn.Conv3d(layer.in_channels, layer.out_channels, (kt, k, k),
                      stride=(1, layer.stride, layer.stride),
                      padding=(kt // 2, k // 2, k // 2), groups=layer.groups,
                      bias=False),
            nn.BatchNorm3d(layer.out_channels), activation(layer.act))
    if layer.op == 'se':
        ratio = layer.out_channels / layer.in_channels
        module = SqueezeExcitation(layer.in_channels, ratio)
        return nn.Sequential(module, activation(layer.act))
    if layer.op in ('shortcut', 'act'):
        pool = nn.AvgPool3d((1, 2, 2), (1, 2, 2), ceil_mode=True) if (
            layer.stride == 2) else None
        act = activation(layer.act)

        class _Shortcut(nn.Module):

            def forward(self, x):
                y = x if pool is None else pool(x)
                if layer.op == 'shortcut':
                    y = y + y
                return act(y)

        return _Shortcut()
    raise ValueError(f'unknown layer op {layer.op!r}')


class LatencyTable:
    """Per-layer latency lookup table, cached on disk.

    Args:
        device (str): Target device, ``'cpu'`` or ``'cuda'`` (or
            ``'cuda:N'``).
        table_file (str, optional): The JSON table; defaults to
            ``~/.cache/e3d_plugin/latency/<device>_b<batch>_t<threads>.json``.
        batch_size (int): Clips per forward pass.
        num_threads (int, optional): torch CPU threads while timing; None
            keeps torch's default.
        warmup (int): Untimed runs before timing a layer.
        repeat (int): Timed runs; the median is kept.
        act (str): Activation of blocks without their own (``'relu'`` or
            ``'swish'``), as the backbone's ``act_cfg``.
        save_every (int): Save the table after this many new entries (it is
            also saved by :meth:`save`).
    """

    def __init__(self, device='cpu', table_file=None, batch_size=1,
                 num_threads=None, warmup=2, repeat=7, act='relu',
                 save_every=50):
        self.device = str(device)
        self.batch_size = int(batch_size)
        self.num_threads = None if num_threads is None else int(num_threads)
        self.warmup = int(warmup)
        self.repeat = max(1, int(repeat))
        self.act = act
        self.save_every = int(save_every)
        if table_file is None:
            name = (f"{self.device.replace(':', '')}_b{self.batch_size}_t"
                    f"{self.num_threads or 'default'}.json")
            table_file = osp.join(
                osp.expanduser('~'), '.cache', 'e3d_plugin', 'latency', name)
        self.table_file = osp.abspath(osp.expanduser(table_file))
        self.entries = {}
        self.num_measured = 0
        self._unsaved = 0
        self._blocks = {}
        self._torch_ready = False
        self.load()

    # ------------------------------------------------------------------
    def meta(self):
        """Settings a table is valid for (stored in the file)."""
        return dict(device=self.device, batch_size=self.batch_size,
                    num_threads=self.num_threads, act=self.act,
                    machine=platform.machine(), processor=platform.processor())

    def load(self):
        """Read the table file if there is one measured under the same
        settings; return the number of entries read."""
        if not osp.isfile(self.table_file):
            return 0
        try:
            with open(self.table_file, encoding='utf-8') as f:
                data = json.load(f)
        except (OSError, ValueError):
            return 0
        if not isinstance(data, dict) or data.get(
                'format') != TABLE_FORMAT or data.get('meta') != self.meta():
            return 0
        entries = data.get('entries', {})
        self.entries.update(
            {k: float(v) for k, v in entries.items()
             if isinstance(v, (int, float))})
        return len(entries)

    def save(self):
        """Write the table atomically."""
        directory = osp.dirname(self.table_file)
        os.makedirs(directory, exist_ok=True)
        tmp = f'{self.table_file}.tmp{os.getpid()}'
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(
                dict(format=TABLE_FORMAT, version=TABLE_VERSION,
                     meta=self.meta(), entries=self.entries), f, indent=0,
                sort_keys=True)
        os.replace(tmp, self.table_file)
        self._unsaved = 0

    # ------------------------------------------------------------------
    def _prepare_torch(self):
        import torch
        if not self._torch_ready:
            if self.num_threads is not None:
                torch.set_num_threads(self.num_threads)
            self._torch_ready = True
        return torch

    def _time(self, module, shape):
        """Median milliseconds of ``module`` on a random input."""
        torch = self._prepare_torch()
        device = torch.device(self.device)
        cuda = device.type == 'cuda'
        module = module.to(device).eval()
        x = torch.randn(*shape, device=device)
        times = []
        with torch.inference_mode():
            for index in range(self.warmup + self.repeat):
                if cuda:
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                module(x)
                if cuda:
                    torch.cuda.synchronize(device)
                if index >= self.warmup:
                    times.append(time.perf_counter() - start)
        times.sort()
        return 1000.0 * times[len(times) // 2]

    def measure_layer(self, layer):
        """Time one layer now (and record it in the table)."""
        shape = (self.batch_size, layer.in_channels, layer.frames,
                 layer.height, layer.width)
        value = self._time(_build_layer(layer), shape)
        self.entries[layer.key()] = value
        self.num_measured += 1
        self._unsaved += 1
        if self.save_every and self._unsaved >= self.save_every:
            self.save()
        return value

    def layer_latency(self, layer):
        """Milliseconds of one layer, timed on first use."""
        value = self.entries.get(layer.key())
        if value is None:
            value = self.measure_layer(layer)
        return value

    def block_latency(self, block, frames, height, width):
        """Milliseconds of one block at input ``(frames, height, width)``
        (memoised per block and input size)."""
        key = (block, frames, height, width)
        value = self._blocks.get(key)
        if value is None:
            layers, _, _ = block_layers(block, frames, height, width,
                                        self.act)
            value = sum(self.layer_latency(layer) for layer in layers)
            self._blocks[key] = value
        return value

    def predict(self, structure, image_size=224, frames=16):
        """Predicted milliseconds of the whole backbone for one batch."""
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        height, width = image_size
        total = 0.0
        for block in structure:
            total += self.block_latency(block, frames, height, width)
            s = block[5]
            height = (height - 1) // s + 1
            width = (width - 1) // s + 1
        return total

    def measure_network(self, structure, image_size=224, frames=16):
        """Measured milliseconds of the built E3D backbone, end to end (the
        reference the predictions are checked against)."""
        from ..models import E3D
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        act_cfg = dict(type='SiLU' if self.act == 'swish' else 'ReLU',
                       inplace=True)
        model = E3D(structure=list(structure), act_cfg=act_cfg)
        shape = (self.batch_size, structure[0].in_channels, frames) + tuple(
            image_size)
        return self._time(model, shape)

    def __repr__(self):
        return (f'LatencyTable(device={self.device!r}, table_file='
                f'{self.table_file!r}, batch_size={self.batch_size}, '
                f'num_threads={self.num_threads}, entries={len(self.entries)})')
