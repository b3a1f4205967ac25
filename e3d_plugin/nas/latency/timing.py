"""Timing code of the latency table: the device's settings and the timer.

:func:`time_module` times any module on random input in inference mode
(``torch.inference_mode``, eval mode): untimed warm-up runs, then the median
of ``repeat`` samples (a sample averages several runs when one run is
shorter than ``min_sample_ms``). Figures are milliseconds per batch. The
:class:`~e3d_plugin.nas.latency.LatencyTable` times its units with it;
:func:`time_network` times a whole :class:`~e3d_plugin.models.E3D` backbone.

A table is only valid for the settings it was measured under
(:func:`device_settings`: device and its name, torch version, threads,
batch size, default activation, memory format, memory allocator).

On the CPU the allocator matters: with glibc's defaults, the large
activations of the first blocks are returned to the system after each use
and page-faulted back in by the next, which makes a whole network slower
than the sum of its units timed alone (and noisier). Setting
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` high (or preloading
jemalloc / tcmalloc) removes that; the allocator is part of a table's
settings (:func:`allocator_settings`), so time under the configuration the
network will run with.

torch is imported only when something has to be measured.
"""
import os
import os.path as osp
import platform
import re
import statistics
import time

from ...units import image_hw


class LatencyError(ValueError):
    """A latency table cannot be used as asked (settings, missing unit)."""


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
    if not isinstance(device, (str, torch.device)) or not re.fullmatch(
            r'cpu|cuda(:[0-9]+)?', str(device)):
        raise LatencyError(
            f"latency device must be 'cpu' or 'cuda[:N]', got {device!r}")
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
    from ...models import E3D
    height, width = image_hw(image_size)
    backbone = E3D(structure=[block.to_dict() for block in structure])
    return time_module(
        backbone, (table.batch_size, 3, frames, height, width), table.device,
        num_threads=table.num_threads, channels_last=table.channels_last,
        warmup=max(3, table.warmup), warmup_ms=max(200.0, table.warmup_ms),
        repeat=max(10, table.repeat), min_sample_ms=table.min_sample_ms)


__all__ = ['LatencyError', 'ALLOCATOR_VARIABLES', 'allocator_settings',
           'device_settings', 'time_module', 'time_network']
