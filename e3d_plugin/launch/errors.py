"""The error every user mistake becomes, and how it is printed: one line."""
import argparse


class LaunchError(RuntimeError):
    """A config, a path or an option a user gave is not usable."""


def _short(value, limit=60):
    """``repr(value)`` cut to about ``limit`` characters, for messages."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit - 5])[:-1] + "...'"
    try:
        text = repr(value)
    except Exception:  # a value's own repr may fail; name its type instead
        return f'<{type(value).__name__}>'
    return text if len(text) <= limit else text[:limit - 3] + '...'


def error_line(e):
    """The message of exception ``e`` on one line (a ``KeyError``'s without
    the quotes ``str`` adds)."""
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(
            e.args[0], str):
        text = e.args[0]
    else:
        text = str(e)
    text = ' '.join(text.split())
    return text or type(e).__name__


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line (exit code 2)."""

    def error(self, message):
        self.exit(2, f'error: {message} (see --help)\n')
