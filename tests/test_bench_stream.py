"""bench/stream_speed.py: a tiny run in both runtimes, its parity check and
its state size; the static stream and a batch of videos."""
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def run_bench(*args):
    return subprocess.run(
        [sys.executable, 'bench/stream_speed.py', '--arch', 'E3D-XS',
         '--size', '32', '--rounds', '2', '--threads', '1', *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_both_runtimes_stream_equals_whole_clip_and_state_size():
    pytest.importorskip('onnxruntime')
    import torch

    from e3d_plugin.deploy import state_nbytes
    from e3d_plugin.models import E3D
    result = run_bench('--frames', '6', '--chunk', '3')
    assert result.returncode == 0, result.stderr
    out = result.stdout
    diffs = re.findall(r'\[(torch|onnxruntime)\] ratio streaming / '
                       r'\(whole / T\) per round: ([\d.]+) .*max abs diff '
                       r'(\S+)', out)
    assert [d[0] for d in diffs] == ['torch', 'onnxruntime']
    for _, ratio, diff in diffs:
        assert float(ratio) > 0
        assert float(diff) <= 1e-5
    assert 'onnxruntime / PyTorch streaming time per round' in out
    model = E3D(arch='E3D-XS', causal=True).eval()
    with torch.no_grad():
        _, state = model.stream_step(torch.zeros(1, 3, 6, 32, 32),
                                     model.init_stream(1))
    kb = re.search(r'state: (\d+) tensors, ([\d.]+) KB', out)
    assert int(kb.group(1)) == len(state)
    assert float(kb.group(2)) == pytest.approx(state_nbytes(state) / 1024,
                                               abs=0.05)


def test_frames_not_a_multiple_of_the_chunk_is_one_line():
    result = run_bench('--frames', '5', '--chunk', '2', '--runtime', 'torch')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'error: --frames 5 is not a multiple of --chunk 2']


def test_static_stream_and_batch_of_videos(tmp_path):
    import json

    from e3d_plugin.deploy import state_nbytes
    from e3d_plugin.models import E3D
    result = run_bench('--frames', '4', '--chunk', '2', '--batch', '3',
                       '--runtime', 'torch', '--json',
                       str(tmp_path / 'stream.json'))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    figures = json.loads((tmp_path / 'stream.json').read_text())
    assert (figures['batch'], figures['chunk'], figures['frames']) == (3, 2,
                                                                       4)
    torch_figures = figures['runtimes']['torch']
    assert set(torch_figures['ms_per_frame']) == {'whole', 'stream',
                                                  'static'}
    assert torch_figures['static_kind'] == 'eager'
    assert torch_figures['static_max_abs_diff'] <= 1e-5
    static_median = torch_figures['ms_per_frame']['static']['median']
    assert f'static stream (eager): {static_median:.2f} ms' in out
    assert 'chunk 2, batch 3, device cpu' in out
    times = re.search(r'\[torch\] whole clip / T: ([\d.]+) ms per frame .*'
                      r'streaming: ([\d.]+) ms per new frame', out)
    static = re.search(
        r'\[torch\] static stream \(eager\): ([\d.]+) ms per new frame '
        r'\(([\d.]+)\.\.([\d.]+)\); ratio static / \(whole / T\) per '
        r'round: ([\d.]+) .*target <= 1.3; static vs whole clip max abs '
        r'diff (\S+)', out)
    assert times and static, out
    assert float(static.group(2)) <= float(static.group(1)) <= float(
        static.group(3))
    assert float(static.group(4)) > 0
    assert float(static.group(5)) <= 1e-5
    assert re.search(r'\[torch\] ratio streaming .*max abs diff (\S+)',
                     out)
    assert re.search(r'\[torch\] static / functional streaming time per '
                     r'round: [\d.]+ \([\d.]+\.\.[\d.]+\)', out)
    # per video: the batch's ms per frame divided by the 3 videos
    per_video = re.search(r'\[torch\] per video \(batch 3\), ms per frame: '
                          r'whole ([\d.]+), stream ([\d.]+), static '
                          r'([\d.]+)', out)
    assert per_video, out
    for index, value in enumerate((times.group(1), times.group(2),
                                   static.group(1)), 1):
        assert float(per_video.group(index)) == pytest.approx(
            float(value) / 3, abs=0.006)
    assert 'onnxruntime' not in out
    # the state of a batch of 3
    model = E3D(arch='E3D-XS', causal=True).eval()
    state = model.init_stream(3, (32, 32))
    kb = re.search(r'state: (\d+) tensors, ([\d.]+) KB', out)
    assert int(kb.group(1)) == len(state)
    assert float(kb.group(2)) == pytest.approx(state_nbytes(state) / 1024,
                                               abs=0.05)


def test_bad_batch_is_one_line():
    result = run_bench('--batch', '0', '--runtime', 'torch')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'error: argument --batch: must be in 1..1024, got 0 (see --help)']
    result = run_bench('--batch', '1024', '--frames', '1024', '--runtime',
                       'torch')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'error: a batch of 1024 clips of 1024x32x32 is 1073741824 voxels, '
        'more than the 16777216 a bench builds at once']
