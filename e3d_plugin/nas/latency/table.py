"""The per-unit latency lookup table, timed on the device and kept on disk.

As FBNet and TinyNAS do, a network's latency is predicted as the sum of the
latencies of its pieces, each distinct piece timed once, alone, on the
target device and kept in a table on disk. Here the piece is one *unit* of a
block (its :class:`~e3d_plugin.nas.latency.keys.UnitKey`), built by the
backbone's own :func:`~e3d_plugin.models.blocks.build_units` (a ``conv``
unit: Conv3d-BN-act; a ``res`` / ``btn`` / ``dwbtn`` unit: its convs, SE,
shortcut and final activation), so what is timed is exactly what the
:class:`~e3d_plugin.models.E3D` backbone runs; the timing itself is
:func:`~e3d_plugin.nas.latency.timing.time_module`.

A table is only valid for the settings it was measured under; they are
stored in the file and checked when it is loaded. The default file name
carries a hash of them, so tables of different settings live side by side
under ``~/.cache/e3d_plugin/latency/``.

The search predicts a candidate in a few dictionary look-ups (block results
are memoised); a unit shape not in the table yet is timed on the spot,
added, and the table is saved every ``save_every`` new units and when the
search checkpoints. ``bench/latency_accuracy.py`` compares predictions with
measured end-to-end latency of whole networks.
"""
import hashlib
import json
import os
import os.path as osp
import time

from ...checks import check_bool, check_int, check_number
from ...fileio import atomic_write
from ...registry import LATENCY_PREDICTORS
from ...structure import Block
from ...units import ACT_CFGS, ACTIVATIONS, image_hw
from .keys import UnitKey, block_units, structure_units
from .timing import LatencyError, device_settings, time_module

TABLE_FORMAT = 'e3d-latency-table'
TABLE_VERSION = 1


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
        if not isinstance(act, str) or act not in ACTIVATIONS:
            raise LatencyError(
                f'latency act must be one of {ACTIVATIONS}, got {act!r}')
        try:
            batch_size = check_int('latency', 'batch_size', batch_size, low=1)
            num_threads = check_int('latency', 'num_threads', num_threads,
                                    low=1, allow_none=True)
            channels_last = check_bool('latency', 'channels_last',
                                       channels_last)
            warmup = check_int('latency', 'warmup', warmup, low=0)
            warmup_ms = check_number('latency', 'warmup_ms', warmup_ms,
                                     low=0)
            repeat = check_int('latency', 'repeat', repeat, low=1)
            min_sample_ms = check_number('latency', 'min_sample_ms',
                                         min_sample_ms, low=0)
            measure = check_bool('latency', 'measure', measure)
            save_every = check_int('latency', 'save_every', save_every,
                                   low=1)
        except ValueError as e:
            raise LatencyError(str(e)) from None
        if table_file is not None and not isinstance(table_file,
                                                     (str, os.PathLike)):
            raise LatencyError(
                'latency: table_file must be a path or None, got '
                f'{type(table_file).__name__}')
        self.settings = device_settings(device, batch_size, num_threads, act,
                                        channels_last)
        self.device = str(device)
        self.batch_size = batch_size
        self.num_threads = self.settings['num_threads']
        self.act = act
        self.channels_last = channels_last
        self.warmup = warmup
        self.warmup_ms = warmup_ms
        self.repeat = repeat
        self.min_sample_ms = min_sample_ms
        self.measure = measure
        self.save_every = save_every
        if table_file is None:
            digest = hashlib.sha1(json.dumps(
                self.settings, sort_keys=True).encode()).hexdigest()[:10]
            folder = os.environ.get('E3D_LATENCY_DIR') or osp.join(
                osp.expanduser('~'), '.cache', 'e3d_plugin', 'latency')
            table_file = osp.join(folder,
                                  f"{self.settings['device']}-{digest}.json")
        self.table_file = osp.abspath(osp.expanduser(os.fspath(table_file)))
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
        except (OSError, ValueError, KeyError, TypeError, AttributeError,
                RecursionError, MemoryError) as e:
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
            except (OSError, ValueError, RecursionError):
                pass  # unreadable: this table's own entries replace it
        entries.update((k.text(), v) for k, v in self.entries.items())
        data = dict(format=TABLE_FORMAT, version=TABLE_VERSION,
                    settings=self.settings, unit='ms per batch',
                    entries=dict(sorted(entries.items())))
        atomic_write(self.table_file,
                     lambda f: json.dump(data, f, indent=1))
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
        height, width = image_hw(image_size)
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
            milliseconds, height, width = found
            total += milliseconds
        return total

    def breakdown(self, structure, image_size=224, frames=16):
        """``[(UnitKey, count, ms each), ...]`` behind :meth:`predict`."""
        return [(key, count, self.unit_latency(key))
                for key, count in structure_units(structure, image_size,
                                                  frames, self.act)]

    # ------------------------------------------------------------------
    def _build_unit(self, key):
        import torch.nn as nn

        from ...models.blocks import build_units
        act_cfg = dict(ACT_CFGS[key.act])
        block = Block(key.kind, key.in_channels, key.out_channels, key.kernel,
                      key.kernel_t, key.stride, 1, key.bottleneck, key.se,
                      None)
        # as the backbone builds it (fast_depthwise only changes the CPU
        # backward, not the inference this table times)
        unit = build_units(block, dict(type='Conv3d'),
                           dict(type='BN3d', requires_grad=True), act_cfg,
                           fast_depthwise=True)
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


def build_latency_predictor(cfg):
    """A :class:`LatencyTable` (or registered predictor) from ``cfg``: a
    dict (``type`` optional) or an object with ``predict``."""
    from ...registry import build
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


__all__ = ['LatencyTable', 'TABLE_FORMAT', 'TABLE_VERSION',
           'build_latency_predictor']
