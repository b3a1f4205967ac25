"""A throttled one-line progress bar for long loops, on stderr."""
import sys
import time


def format_count(value):
    """``12345`` -> ``'12.3k'``; compact counts for the bar."""
    for unit, size in (('G', 1e9), ('M', 1e6), ('k', 1e3)):
        if abs(value) >= size:
            return f'{value / size:.3g}{unit}'
    return f'{value:.3g}' if isinstance(value, float) else str(value)


def format_duration(seconds):
    """Seconds as ``'1h02m'``, ``'3m05s'`` or ``'12.3s'``."""
    if seconds >= 3600:
        return f'{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m'
    if seconds >= 60:
        return f'{int(seconds // 60)}m{int(seconds % 60):02d}s'
    return f'{seconds:.1f}s'


class ProgressBar:
    """Redraws ``[####....] done/total | text`` at most every
    ``min_interval`` seconds.

    Only drawn where ``stream`` is a terminal (unless ``enabled`` says
    otherwise); elsewhere the caller logs periodic lines instead.
    """

    def __init__(self, total, stream=None, enabled=None, width=24,
                 min_interval=0.2):
        self.total = max(int(total), 1)
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, 'isatty', None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.width = width
        self.min_interval = min_interval
        self._last = 0.0
        self._shown = False

    def update(self, done, text='', force=False):
        """Redraw if enabled and enough time has passed (or ``force``)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        filled = min(self.width, self.width * done // self.total)
        bar = '#' * filled + '.' * (self.width - filled)
        self.stream.write(f'\r\033[K[{bar}] {done:,}/{self.total:,} {text}')
        self.stream.flush()
        self._shown = True

    def clear(self):
        """Erase the bar (before another line is printed)."""
        if self.enabled and self._shown:
            self.stream.write('\r\033[K')
            self.stream.flush()
            self._shown = False

    def close(self):
        """End the bar's line."""
        if self.enabled and self._shown:
            self.stream.write('\n')
            self.stream.flush()
            self._shown = False
