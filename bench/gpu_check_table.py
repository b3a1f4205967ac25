"""The one table of ``bench/gpu_check.sh``: every part's figures from the
files it left in a results folder, and each target of the GPU issue met or
not.

    python bench/gpu_check_table.py RESULTS_DIR

Reads ``speed_*.json`` (bench/backbone_speed.py), ``stream_b*.json``
(bench/stream_speed.py), ``memory.json`` (bench/memory_check.py) and the
training and test logs (``train.txt``, ``test.txt`` with ``*.rc``); a part
that did not run or failed is shown as such. Ratios between configurations
(e.g. AMP / fp32) come from separate runs, not interleaved ones: they carry
the drift between runs, which the per-round ratios inside one run do not.
"""
import json
import os
import os.path as osp
import re
import sys

# Targets of the GPU issue (E3D-M, 16x224x224, batch 8, one H100/H200).
AMP_SPEEDUP = 1.3
TRAIN_CLIPS = 300
TRAIN_VS_X3D = 1.5
INFER_CLIPS = 1500
STREAM_RATIO = 1.3
SPEED_CONFIGS = ('fp32', 'amp', 'amp_dw_fp32', 'triton', 'amp_triton',
                 'fuse_bn', 'amp_fuse_bn', 'amp_compile', 'compile',
                 'e3d_channels_last')


def load(folder, name):
    """The JSON file ``name`` in ``folder``, or None."""
    path = osp.join(folder, name)
    if not osp.exists(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def exit_code(folder, name):
    """The exit status a part recorded in ``name.rc`` (an int, or
    ``'skipped'`` when the time budget was used up), or None."""
    try:
        with open(osp.join(folder, name + '.rc'), encoding='ascii') as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == 'skipped':
        return text
    try:
        return int(text)
    except ValueError:
        return None


def met(value, target, above=True):
    """``yes`` / ``NO`` for ``value`` against ``target``."""
    if value is None:
        return '-'
    return 'yes' if (value >= target if above else value <= target) else 'NO'


def fmt(value, spec='.1f'):
    return '-' if value is None else format(value, spec)


class Table:
    """Rows of part, configuration, figure, value, target, met."""

    def __init__(self):
        self.rows = []

    def add(self, part, config, figure, value, target='', ok=''):
        self.rows.append((part, config, figure, value, target, ok))

    def print(self):
        head = ('part', 'config', 'figure', 'value', 'target', 'met')
        widths = [max(len(str(r[i])) for r in self.rows + [head])
                  for i in range(len(head))]
        for row in [head] + self.rows:
            print('  '.join(str(c).ljust(w) for c, w in zip(row, widths))
                  .rstrip())


def speed_rows(folder, table):
    """Item 2 and 3 rows; returns the figures by configuration."""
    runs = {}
    for config in SPEED_CONFIGS:
        data = load(folder, f'speed_{config}.json')
        rc = exit_code(folder, f'speed_{config}')
        if data is None:
            if rc == 'skipped':
                table.add('speed', config, 'run', 'skipped (time budget)')
            elif rc is not None:
                table.add('speed', config, 'run', f'failed (exit {rc})')
            continue
        runs[config] = data
        first, second = data['settings']['models']
        for mode_name, mode in data['modes'].items():
            clips = mode['clips_s']
            fraction = mode.get('memory', {}).get(first, {}).get('fraction')
            ratio = mode['ratio']
            table.add(
                'speed', config, f'{mode_name} clips/s {first} / {second}',
                f'{clips[first]["median"]:.1f} / {clips[second]["median"]:.1f}'
                f', x{ratio["median"]:.2f} [{ratio.get("q1", 0):.2f}-'
                f'{ratio.get("q3", 0):.2f}]'
                + ('' if fraction is None else f', bw {fraction:.0%}'))
            shares = []
            for name in (first, second):
                p = mode.get('profile', {}).get(name)
                if p:
                    total = p.get('kernel_ms') or p['step_ms']
                    shares.append(f'{name} {p["dw_ms"] / total:.0%} of '
                                  f'{total:.1f} ms')
            if shares:
                table.add('speed', config, f'{mode_name} depthwise share of '
                          'kernel (CPU: step) time', ', '.join(shares))
    if not runs:
        return runs

    def e3d(config, mode):
        data = runs.get(config)
        if data is None or mode not in data['modes']:
            return None
        first = data['settings']['models'][0]
        return data['modes'][mode]['clips_s'][first]['median']

    base = e3d('fp32', 'train')
    amp = [c for c in runs if c.startswith('amp')]
    if base and amp:
        best = max(amp, key=lambda c: e3d(c, 'train') or 0)
        speedup = (e3d(best, 'train') or 0) / base
        table.add('2 AMP', best, 'E3D train clips/s AMP / fp32 (separate '
                  'runs)', f'{speedup:.2f}', f'>= {AMP_SPEEDUP}',
                  met(speedup, AMP_SPEEDUP))
    def best(mode):
        """The configuration with the most E3D clips/s in ``mode`` (the
        layout check aside) and its clips/s, or (None, None)."""
        found = {c: e3d(c, mode) for c in runs if c != 'e3d_channels_last'}
        found = {c: v for c, v in found.items() if v}
        if not found:
            return None, None
        config = max(found, key=found.get)
        return config, found[config]

    config, clips = best('train')
    if config:
        table.add('2 train', config, 'E3D train clips/s (best config)',
                  f'{clips:.1f}', f'>= {TRAIN_CLIPS}',
                  met(clips, TRAIN_CLIPS))
        ratio = runs[config]['modes']['train']['ratio']['median']
        table.add('2 train', config, 'E3D / X3D train clips/s, same run',
                  f'{ratio:.2f}', f'>= {TRAIN_VS_X3D}',
                  met(ratio, TRAIN_VS_X3D))
    config, clips = best('infer')
    if config:
        table.add('2 infer', config, 'E3D infer clips/s (best config)',
                  f'{clips:.1f}', f'>= {INFER_CLIPS}',
                  met(clips, INFER_CLIPS))
    layout = e3d('e3d_channels_last', 'train')
    if base and layout:
        ratio = layout / base
        # a few per cent of drift between runs is not a layout trap
        table.add('3 layout', 'e3d_channels_last', 'E3D(channels_last=True) '
                  '/ contiguous train clips/s', f'{ratio:.2f}', '>= 0.95',
                  met(ratio, 0.95))
    return runs


def stream_rows(folder, table):
    """Item 4 rows."""
    for name in sorted(os.listdir(folder)):
        match = re.fullmatch(r'stream_b(\d+)\.json', name)
        if not match:
            continue
        data = load(folder, name)
        if data is None:
            continue
        figures = data['runtimes'].get('torch')
        if figures is None:
            continue
        config = f'{data["arch"]} {data["frames"]}x{data["size"]}, batch ' \
                 f'{data["batch"]}'
        ms = figures['ms_per_frame']
        table.add('4 stream', config, 'whole clip ms per frame',
                  fmt(ms['whole']['median'], '.3f'))
        ratio = figures['stream_ratio']['median']
        table.add('4 stream', config, 'functional stream_step / whole',
                  f'{ratio:.2f}', f'<= {STREAM_RATIO}',
                  met(ratio, STREAM_RATIO, above=False))
        if 'static_ratio' in figures:
            ratio = figures['static_ratio']['median']
            table.add('4 stream', config,
                      f'static stream ({figures["static_kind"]}) / whole',
                      f'{ratio:.2f} (max abs diff '
                      f'{figures["static_max_abs_diff"]:.1g})',
                      f'<= {STREAM_RATIO}',
                      met(ratio, STREAM_RATIO, above=False))
    for name in sorted(os.listdir(folder)):
        match = re.fullmatch(r'(stream_b\d+)\.rc', name)
        if match and exit_code(folder, match.group(1)):
            table.add('4 stream', match.group(1), 'run',
                      f'failed (exit {exit_code(folder, match.group(1))})')


def memory_rows(folder, table):
    """Rows of the memory check (the cost model's activation_bytes)."""
    data = load(folder, 'memory.json')
    if data is None:
        rc = exit_code(folder, 'memory')
        if rc is not None:
            table.add('memory', '-', 'run', f'failed (exit {rc})')
        return
    for row in data['rows']:
        config = (f'{row["arch"]} {row["frames"]}x{row["size"]}, batch '
                  f'{row["batch"]}')
        value = f'held/predicted {row["held"] / row["predicted"]:.3f}'
        if 'peak' in row:
            value += (f', peak/predicted {row["peak"] / row["predicted"]:.3f}'
                      f' ({row["peak"] / 2**30:.2f} GiB)')
        table.add('memory', config, 'activation_bytes x batch vs measured',
                  value)


def last_accuracy(text, phase):
    """The last ``acc/top1`` of an ``Epoch(phase)`` line, or None."""
    found = re.findall(rf'Epoch\({phase}\).*?acc/top1: ([0-9.]+)', text)
    return float(found[-1]) if found else None


def train_rows(folder, table):
    """Item 5 rows."""
    for part, phase in (('train', 'val'), ('test', 'test')):
        rc = exit_code(folder, part)
        if rc is None:
            continue
        try:
            with open(osp.join(folder, part + '.txt'),
                      encoding='utf-8', errors='replace') as f:
                text = f.read()
        except OSError:
            text = ''
        acc = last_accuracy(text, phase)
        what = ('dist_train.sh CONFIG 1, 1 epoch' if part == 'train'
                else 'tools/test.py on its checkpoint')
        amp = 'AmpOptimWrapper' in text
        table.add('5 cuda path', 'XS recipe' + (' (AMP)' if amp and
                                               part == 'train' else ''),
                  what, f'exit {rc}; {phase} top1 {fmt(acc, ".3f")}',
                  'exit 0', 'yes' if rc == 0 else 'NO')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not osp.isdir(argv[0]):
        print('usage: python bench/gpu_check_table.py RESULTS_DIR',
              file=sys.stderr)
        return 2
    folder = argv[0]
    table = Table()
    speed_rows(folder, table)
    stream_rows(folder, table)
    memory_rows(folder, table)
    train_rows(folder, table)
    if not table.rows:
        print(f'no results in {folder}')
        return 1
    table.print()
    return 0


if __name__ == '__main__':
    sys.exit(main())
