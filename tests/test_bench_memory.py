"""bench/memory_check.py on the CPU: the saved-tensor count against the
cost model's activation_bytes, and its one-line errors."""
import json
import subprocess
import sys

from tests.helpers import ROOT


def run_bench(*args):
    return subprocess.run([sys.executable, 'bench/memory_check.py', *args],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_cpu_rows_match_the_cost_model(tmp_path):
    from e3d_plugin import PRESETS, compute_cost
    from e3d_plugin.structure import resolve_structure
    result = run_bench('--device', 'cpu', '--archs', 'E3D-XS', 'E3D-S',
                       '--batches', '1', '2', '--frames', '3', '--size',
                       '24', '--json', str(tmp_path / 'memory.json'))
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / 'memory.json').read_text())['rows']
    assert [(r['arch'], r['batch']) for r in rows] == [
        ('E3D-XS', 1), ('E3D-XS', 2), ('E3D-S', 1), ('E3D-S', 2)]
    for row in rows:
        assert 'E3D-XS' in PRESETS
        cost = compute_cost(resolve_structure(row['arch'], None, None), 24,
                            3)
        assert row['predicted'] == row['batch'] * cost.activation_bytes
        if row['batch'] == 1:  # exact at batch 1 (tests/test_cost.py)
            assert row['held'] == row['predicted']
        else:  # per-channel norm statistics do not grow with the batch
            assert 0.95 * row['predicted'] < row['held'] < row['predicted']
        assert 'peak' not in row
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ['arch', 'clip', 'batch', 'predicted']
    assert len(lines) == 5 and lines[1].split()[:3] == ['E3D-XS', '3x24x24',
                                                        '1']


def test_bad_inputs_are_one_line():
    result = run_bench('--device', 'cuda:7', '--archs', 'E3D-XS')
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith('error: --device cuda:7')
    result = run_bench('--batches', '0')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'error: argument --batches: must be in 1..256, got 0 (see --help)']
