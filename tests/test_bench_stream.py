"""bench/stream_speed.py: a tiny run in both runtimes, its parity check and
its state size."""
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytest.importorskip('onnxruntime')


def run_bench(*args):
    return subprocess.run(
        [sys.executable, 'bench/stream_speed.py', '--arch', 'E3D-XS',
         '--size', '32', '--rounds', '2', '--threads', '1', *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_both_runtimes_stream_equals_whole_clip_and_state_size():
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
