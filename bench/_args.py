"""Command-line checks the benches share: integers and numbers within
bounds, the device, and the end of a run on a bad input (one line
``error: ...`` on stderr and exit code 2, as the tools do)."""
import argparse
import math
import sys

#: Most voxels (batch x T x H x W) of an input a bench builds at once:
#: 2**24, e.g. 8x16x224x224 (the GPU check's clips) or 1x64x512x512.
MAX_VOXELS = 2**24
#: Largest number of timed rounds.
MAX_ROUNDS = 1000


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line (exit code 2), as
    ``e3d_plugin.launch.OneLineArgumentParser`` does, without importing
    ``e3d_plugin`` (a bench's worker may import another tree's)."""

    def error(self, message):
        self.exit(2, f'error: {message} (see --help)\n')


def _shown(text, limit=24):
    text = str(text)
    return text if len(text) <= limit else text[:limit - 4] + '...'


def bounded_int(low, high):
    """argparse type: an integer in ``low..high``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'not an integer: {_shown(text)!r}') from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f'must be in {low}..{high}, got {_shown(value)}')
        return value

    parse.__name__ = f'integer in {low}..{high}'
    return parse


def finite_float(low=0.0):
    """argparse type: a finite number >= ``low``."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'not a number: {_shown(text)!r}') from None
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(
                f'must be a finite number >= {low:g}, got {_shown(text)}')
        return value

    parse.__name__ = f'finite number >= {low:g}'
    return parse


def fail(message):
    """Print ``error: message`` (on one line) and return exit code 2."""
    print('error: ' + ' '.join(str(message).split()), file=sys.stderr)
    return 2


def check_voxels(what, voxels):
    """Raise ``ValueError`` when ``voxels`` exceeds :data:`MAX_VOXELS`."""
    if voxels > MAX_VOXELS:
        raise ValueError(
            f'{what} is {voxels} voxels, more than the {MAX_VOXELS} a bench '
            'builds at once')


def check_output_option(parser, path, option='--json'):
    """End through ``parser.error`` (one line, exit code 2) unless
    ``path`` is None or a file that can be written (``check_output_path``
    of ``e3d_plugin.launch``, which accepts folders still to be made:
    :func:`write_json` makes them)."""
    if path is None:
        return
    from e3d_plugin.launch import LaunchError, check_output_path
    try:
        check_output_path(path, option)
    except LaunchError as e:
        parser.error(str(e))


def write_json(path, data):
    """Write ``data`` to ``path`` as JSON, making the folders above it."""
    import json
    import os
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=1)


def check_device(device, option='--device'):
    """``ValueError`` unless ``device`` is ``cpu``, ``cuda`` or ``cuda:N``
    of an existing GPU."""
    from e3d_plugin.deploy import DeployError
    from e3d_plugin.deploy import check_device as check
    try:
        return check(device, option)
    except DeployError as e:
        raise ValueError(str(e)) from None


def git_revision(root, revision, option='--baseline'):
    """The commit ``revision`` names in the repository at ``root``; a
    ``ValueError`` naming ``option`` if it names none."""
    import subprocess
    if not revision or revision.startswith('-'):
        raise ValueError(f'{option} {revision!r}: not a revision of this '
                         'repository')
    proc = subprocess.run(
        ['git', 'rev-parse', '--verify', '--quiet', revision + '^{commit}'],
        cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError(f'{option} {revision}: not a revision of this '
                         'repository')
    return proc.stdout.strip()
