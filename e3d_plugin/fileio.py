"""Writing files so that a kill or a full disk never leaves half of one."""
import os

#: Suffix of the temporary file an atomic write goes through (then the pid).
TEMPORARY_SUFFIX = '.tmp'


def atomic_write(path, write, mode='w', sync=False):
    """Write ``path`` through ``write(file)`` into a temporary file beside
    it, then rename that over ``path``.

    A reader sees the old file or the new one, never half of one; a write
    that fails or is interrupted leaves ``path`` as it was and removes the
    temporary file. ``sync`` flushes the data to disk before the rename (for
    files a resumed run relies on). Returns ``path``.
    """
    tmp = f'{path}{TEMPORARY_SUFFIX}{os.getpid()}'
    try:
        with open(tmp, mode, **({} if 'b' in mode else dict(
                encoding='utf-8'))) as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return path
