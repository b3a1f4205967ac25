"""Latency of a structure, predicted from a per-unit lookup table.

As FBNet and TinyNAS do, a network's latency is predicted as the sum of the
latencies of its pieces, each distinct piece timed once, alone, on the
target device and kept in a table on disk. Here the piece is one *unit* of a
block, built by the backbone's own :func:`~e3d_plugin.models.blocks.build_units`
(a ``conv`` unit: Conv3d-BN-act; a ``res`` / ``btn`` / ``dwbtn`` unit: its
convs, SE, shortcut and final activation), so what is timed is exactly what
the :class:`~e3d_plugin.models.E3D` backbone runs. A unit's key is its shape:
kind, input and output width, kernel, stride, bottleneck width, SE ratio,
activation and input size ``(T, H, W)``. A block of depth ``L`` costs its
first unit plus ``L - 1`` times its inner unit, which all share one key.

Timing is inference (``torch.inference_mode``, eval mode) of one batch of
``batch_size`` clips: untimed warm-up runs, then the median of ``repeat``
samples (a sample averages several runs when one run is shorter than
``min_sample_ms``). Figures are milliseconds per batch.

A table is only valid for the settings it was measured under (device and
its name, torch version, threads, batch size, default activation, memory
format, memory allocator); they are stored in the file and checked when it
is loaded. The default file name carries a hash of them, so tables of
different settings live side by side under ``~/.cache/e3d_plugin/latency/``.

On the CPU the allocator matters: with glibc's defaults, the large
activations of the first blocks are returned to the system after each use
and page-faulted back in by the next, which makes a whole network slower
than the sum of its units timed alone (and noisier). Setting
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` high (or preloading
jemalloc / tcmalloc) removes that; the allocator is part of a table's
settings, so time under the configuration the network will run with.

The search predicts a candidate in a few dictionary look-ups (block results
are memoised); a unit shape not in the table yet is timed on the spot,
added, and the table is saved every ``save_every`` new units and when the
search checkpoints. ``bench/latency_accuracy.py`` compares predictions with
measured end-to-end latency of whole networks.

torch is imported only when something has to be measured.
"""
import hashlib
import json
import os
import os.path as osp
import platform
import statistics
import time
from typing import NamedTuple

from ..cost import _hw
from ..registry import LATENCY_PREDICTORS
from ..structure import Block

TABLE_FORMAT = 'e3d-latency-table'
TABLE_VERSION = 1
ACTIVATIONS = ('relu', 'swish')


class LatencyError(ValueError):
    """A latency table cannot be used as asked (settings, missing unit)."""


class UnitKey(NamedTuple):
    """The shape of one timed unit (input sizes ``frames x height x width``).
    """

    kind: str
    in_channels: int
    out_channels: int
    kernel: int
    kernel_t: int
    stride: int
    bottleneck: int
    se: float
    act: str
    frames: int
    height: int
    width: int

    def text(self):
        """The key as written in the table file."""
        return '|'.join(str(v) for v in self)

    @classmethod
    def parse(cls, text):
        """Inverse of :meth:`text`."""
        fields = text.split('|')
        if len(fields) != len(cls._fields):
            raise ValueError(f'bad unit key {text!r}')
        (kind, cin, cout, k, kt, s, btn, se, act, t, h, w) = fields
        return cls(kind, int(cin), int(cout), int(k), int(kt), int(s),
                   int(btn), float(se), act, int(t), int(h), int(w))

    def describe(self):
        """A short human-readable form."""
        extra = f' btn {self.bottleneck}' if self.bottleneck else ''
        extra += f' se {self.se:g}' if self.se else ''
        return (f'{self.kind} {self.in_channels}->{self.out_channels} '
                f'{self.kernel_t}x{self.kernel}x{self.kernel} s{self.stride}'
                f'{extra} {self.act} at {self.frames}x{self.height}x'
                f'{self.width}')


def _halve(size, stride):
    # the backbone pads k // 2, so a stride-2 unit maps H to ceil(H / 2)
    return (size - 1) // stride + 1


def block_units(block, frames, height, width, act='relu'):
    """``([(UnitKey, count), ...], out_height, out_width)`` of one block at
    input ``frames x height x width``; ``act`` is the activation of blocks
    without their own."""
    kind, cin, cout, k, kt, s, depth, btn, se, block_act = block
    act = block_act or act
    se = float(se or 0.0)
    btn = int(btn or 0)
    units = [(UnitKey(kind, cin, cout, k, kt, s, btn, se, act, frames,
                      height, width), 1)]
    height, width = _halve(height, s), _halve(width, s)
    if depth > 1:
        units.append((UnitKey(kind, cout, cout, k, kt, 1, btn, se, act,
                              frames, height, width), depth - 1))
    return units, height, width


def structure_units(structure, image_size=224, frames=16, act='relu'):
    """Every ``(UnitKey, count)`` of ``structure`` for one clip, in order."""
    height, width = _hw(image_size)
    units = []
    for block in structure:
        block_list, height, width = block_units(block, frames, height, width,
                                                act)
        units.extend(block_list)
    return units


def _cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: environment variables that change how the CPU allocator behaves
ALLOCATOR_VARIABLES = ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_',
                       'MALLOC_TOP_PAD_', 'MALLOC_ARENA_MAX', 'MALLOC_CONF')


def allocator_settings(environ=None):
    """The memory allocator's configuration as one string: a preloaded
    allocator library and the glibc / jemalloc tuning variables that are
    set, or ``'default'``."""
    environ = os.environ if environ is None else environ
    parts = []
    for path in environ.get('LD_PRELOAD', '').replace(':', ' ').split():
        name = osp.basename(path)
        if 'malloc' in name:
            parts.append(name)
    for name in ALLOCATOR_VARIABLES:
        if environ.get(name):
            parts.append(f'{name}={environ[name]}')
    return ' '.join(parts) or 'default'


def device_settings(device='cpu', batch_size=1, num_threads=None,
                    act='relu', channels_last=False):
    """The settings a table is valid for (torch imported here)."""
    import torch
    device = str(device)
    if device.startswith('cuda'):
        if not torch.cuda.is_available():
            raise LatencyError(
                f"latency device '{device}' asked, but torch has no CUDA "
                "device here; use device='cpu' or run on the target machine")
        name = torch.cuda.get_device_name(torch.device(device))
    elif device == 'cpu':
        name = _cpu_name()
    else:
        raise LatencyError(
            f"latency device must be 'cpu' or 'cuda[:N]', got {device!r}")
    threads = int(num_threads) if num_threads else torch.get_num_threads()
    return dict(device=device.split(':')[0], device_name=name,
                torch=torch.__version__.split('+')[0], num_threads=threads,
                batch_size=int(batch_size), act=act,
                channels_last=bool(channels_last),
                allocator=allocator_settings())


@LATENCY_PREDICTORS.register_module()
class LatencyTable:
    """Per-unit latency lookup table, timed on the device and kept on disk.

    Args:
        device (str): Target device: ``'cpu'`` or ``'cuda'`` / ``'cuda:N'``.
        batch_size (int): Clips per timed forward pass. Defaults to 1.
        num_threads (int, optional): torch intra-op threads while timing on
            the CPU; None takes torch's current setting.
        table_file (str, optional): The JSON table. Defaults to
            ``~/.cache/e3d_plugin/latency/<device>-<hash of settings>.json``
            (``$E3D_LATENCY_DIR`` replaces the folder).
        act (str): Activation of blocks without their own (the backbone's
            ``act_cfg``): ``'relu'`` or ``'swish'``.
        channels_last (bool): Time in ``channels_last_3d`` memory format, as
            the backbone's ``channels_last=True`` runs.
        warmup (int): Untimed runs before the samples of a unit (at least).
        warmup_ms (float): ... and untimed runs for at least this long.
        repeat (int): Timed samples of a unit; their median is kept.
        min_sample_ms (float): A sample averages as many runs as it takes
            to last about this long (short units are otherwise all timer
            noise).
        measure (bool): Time units missing from the table. With False a
            missing unit raises :class:`LatencyError` (use a table measured
            on the target device beforehand).
        save_every (int): Save the table after this many new units.
    """

    def __init__(self,
                 device='cpu',
                 batch_size=1,
                 num_threads=None,
                 table_file=None,
                 act='relu',
                 channels_last=False,
                 warmup=1,
                 warmup_ms=10.0,
                 repeat=5,
                 min_sample_ms=2.0,
                 measure=True,
                 save_every=20):
        if act not in ACTIVATIONS:
            raise LatencyError(
                f'latency act must be one of {ACTIVATIONS}, got {act!r}')
        for name, value, low in (('batch_size', batch_size, 1),
                                 ('warmup', warmup, 0), ('repeat', repeat, 1),
                                 ('save_every', save_every, 1)):
            if not isinstance(value, int) or value < low:
                raise LatencyError(
                    f'latency {name} must be an integer >= {low}, got '
                    f'{value!r}')
        if num_threads is not None and (not isinstance(num_threads, int)
                                        or num_threads < 1):
            raise LatencyError(
                f'latency num_threads must be a positive integer or None, '
                f'got {num_threads!r}')
        self.settings = device_settings(device, batch_size, num_threads, act,
                                        channels_last)
        self.device = str(device)
        self.batch_size = batch_size
        self.num_threads = self.settings['num_threads']
        self.act = act
        self.channels_last = bool(channels_last)
        self.warmup = warmup
        self.warmup_ms = float(warmup_ms)
        self.repeat = repeat
        self.min_sample_ms = float(min_sample_ms)
        self.measure = bool(measure)
        self.save_every = save_every
        if table_file is None:
            digest = hashlib.sha1(json.dumps(
                self.settings, sort_keys=True).encode()).hexdigest()[:10]
            folder = os.environ.get('E3D_LATENCY_DIR') or osp.join(
                osp.expanduser('~'), '.cache', 'e3d_plugin', 'latency')
            table_file = osp.join(folder,
                                  f"{self.settings['device']}-{digest}.json")
        self.table_file = osp.abspath(osp.expanduser(table_file))
        self.entries = {}
        #: units timed by this object (not loaded from the file)
        self.num_measured = 0
        self.measure_s = 0.0
        self._unsaved = 0
        self._blocks = {}
        self.load()

    # ------------------------------------------------------------------
    def load(self):
        """Read the table file if it exists; check its settings."""
        if not osp.isfile(self.table_file):
            return
        try:
            with open(self.table_file) as f:
                data = json.load(f)
            if data.get('format') != TABLE_FORMAT:
                raise ValueError('not an E3D latency table')
            if data.get('version') != TABLE_VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            entries = {UnitKey.parse(k): float(v)
                       for k, v in data['entries'].items()}
            settings = data['settings']
        except (OSError, ValueError, KeyError, TypeError,
                AttributeError) as e:
            raise LatencyError(
                f'latency table {self.table_file} is unreadable '
                f'({type(e).__name__}: {e}); delete it to measure afresh'
            ) from None
        if settings != self.settings:
            diff = ', '.join(
                f'{k} {settings.get(k)!r} (here {v!r})'
                for k, v in self.settings.items() if settings.get(k) != v)
            raise LatencyError(
                f'latency table {self.table_file} was measured under other '
                f'settings: {diff}; give another table_file')
        self.entries.update(entries)

    def save(self):
        """Write the table atomically (merging units another process added).
        """
        if not self._unsaved and osp.isfile(self.table_file):
            return
        folder = osp.dirname(self.table_file)
        os.makedirs(folder, exist_ok=True)
        entries = {}
        if osp.isfile(self.table_file):
            try:
                with open(self.table_file) as f:
                    data = json.load(f)
                if data.get('settings') == self.settings:
                    entries.update(data.get('entries', {}))
            except (OSError, ValueError):
                pass
        entries.update((k.text(), v) for k, v in self.entries.items())
        data = dict(format=TABLE_FORMAT, version=TABLE_VERSION,
                    settings=self.settings, unit='ms per batch',
                    entries=dict(sorted(entries.items())))
        tmp = f'{self.table_file}.tmp{os.getpid()}'
        with open(tmp, 'w') as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.table_file)
        self._unsaved = 0

    def __len__(self):
        return len(self.entries)

    # ------------------------------------------------------------------
    def unit_latency(self, key):
        """Milliseconds of one unit, timed now if the table lacks it."""
        value = self.entries.get(key)
        if value is None:
            if not self.measure:
                raise LatencyError(
                    f'latency table {self.table_file} has no entry for the '
                    f'unit {key.describe()} and measure=False')
            started = time.perf_counter()
            value = self.entries[key] = self._time_unit(key)
            self.measure_s += time.perf_counter() - started
            self.num_measured += 1
            self._unsaved += 1
            if self._unsaved >= self.save_every:
                self.save()
        return value

    def predict(self, structure, image_size=224, frames=16):
        """Predicted milliseconds of one batch through ``structure``."""
        height, width = _hw(image_size)
        total = 0.0
        blocks = self._blocks
        for block in structure:
            memo = (block, frames, height, width)
            found = blocks.get(memo)
            if found is None:
                units, out_h, out_w = block_units(block, frames, height,
                                                  width, self.act)
                found = blocks[memo] = (sum(
                    self.unit_latency(key) * count for key, count in units),
                    out_h, out_w)
            total += found[0]
            height, width = found[1], found[2]
        return total

    def breakdown(self, structure, image_size=224, frames=16):
        """``[(UnitKey, count, ms each), ...]`` behind :meth:`predict`."""
        return [(key, count, self.unit_latency(key))
                for key, count in structure_units(structure, image_size,
                                                  frames, self.act)]

    # ------------------------------------------------------------------
    def _build_unit(self, key):
        import torch.nn as nn

        from ..models.blocks import build_units
        act_cfg = dict(type='SiLU' if key.act == 'swish' else 'ReLU',
                       inplace=True)
        block = Block(key.kind, key.in_channels, key.out_channels, key.kernel,
                      key.kernel_t, key.stride, 1, key.bottleneck, key.se,
                      None)
        unit = build_units(block, dict(type='Conv3d'),
                           dict(type='BN3d', requires_grad=True), act_cfg)
        assert isinstance(unit, nn.Sequential) and len(unit) == 1
        return unit

    def _time_unit(self, key):
        import torch
        shape = (self.batch_size, key.in_channels, key.frames, key.height,
                 key.width)
        return time_module(self._build_unit(key), shape, self.device,
                           num_threads=self.num_threads,
                           channels_last=self.channels_last,
                           warmup=self.warmup, warmup_ms=self.warmup_ms,
                           repeat=self.repeat,
                           min_sample_ms=self.min_sample_ms,
                           generator=torch.Generator().manual_seed(0))

    def __repr__(self):
        return (f'LatencyTable({self.table_file!r}, {len(self)} units, '
                f"{self.settings['device']} {self.settings['device_name']!r},"
                f" batch {self.batch_size}, {self.num_threads} threads)")


def time_module(module, input_shape, device='cpu', num_threads=None,
                channels_last=False, warmup=2, repeat=5, min_sample_ms=5.0,
                warmup_ms=30.0, generator=None):
    """Median milliseconds of ``module(x)`` for a random ``x`` of
    ``input_shape`` in inference mode (used for units and whole networks
    alike)."""
    import torch
    device = torch.device(device)
    cuda = device.type == 'cuda'
    old_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    try:
        module = module.to(device).eval()
        x = torch.randn(input_shape, generator=generator).to(device)
        if channels_last:
            module = module.to(memory_format=torch.channels_last_3d)
            x = x.contiguous(memory_format=torch.channels_last_3d)

        def once():
            module(x)

        with torch.inference_mode():
            # warm up for ``warmup`` runs and at least ``warmup_ms`` (lazy
            # initialisation, caches, clock); the last run sizes a sample
            runs = 0
            started = time.perf_counter()
            while True:
                last = time.perf_counter()
                once()
                if cuda:
                    torch.cuda.synchronize(device)
                runs += 1
                now = time.perf_counter()
                if runs >= max(warmup, 1) and (
                        (now - started) * 1e3 >= warmup_ms or runs >= 100):
                    break
            one = now - last
            number = max(1, min(1000, int(min_sample_ms / 1e3 / max(
                one, 1e-7))))
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                for _ in range(number):
                    once()
                if cuda:
                    torch.cuda.synchronize(device)
                samples.append((time.perf_counter() - started) / number)
        return statistics.median(samples) * 1e3
    finally:
        torch.set_num_threads(old_threads)


def time_network(structure, table, image_size=224, frames=16):
    """Measured milliseconds of the whole :class:`~e3d_plugin.models.E3D`
    backbone of ``structure`` under ``table``'s settings, in steady state
    (at least 3 warm-up runs and 200 ms, median of at least 10 samples)."""
    from ..models import E3D
    height, width = _hw(image_size)
    backbone = E3D(structure=[block.to_dict() for block in structure])
    return time_module(
        backbone, (table.batch_size, 3, frames, height, width), table.device,
        num_threads=table.num_threads, channels_last=table.channels_last,
        warmup=max(3, table.warmup), warmup_ms=max(200.0, table.warmup_ms),
        repeat=max(10, table.repeat), min_sample_ms=table.min_sample_ms)


def build_latency_predictor(cfg):
    """A :class:`LatencyTable` (or registered predictor) from ``cfg``: a
    dict (``type`` optional) or an object with ``predict``."""
    from ..registry import build
    if cfg is None:
        cfg = {}
    if hasattr(cfg, 'predict'):
        return cfg
    cfg = dict(cfg)
    cfg.setdefault('type', 'LatencyTable')
    try:
        return build(LATENCY_PREDICTORS, cfg)
    except TypeError as e:
        raise LatencyError(f'latency config {cfg}: {e}') from None


__all__ = ['LatencyTable', 'LatencyError', 'UnitKey', 'block_units',
           'structure_units', 'time_module', 'time_network',
           'device_settings',
           'allocator_settings',
           'build_latency_predictor']
