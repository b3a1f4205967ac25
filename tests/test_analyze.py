"""tools/analyze.py: table, JSON, errors."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from e3d_plugin.structure import save_structure
from tests.helpers import ROOT, analyze_main

TOOL = osp.join(ROOT, 'tools', 'analyze.py')


@pytest.mark.parametrize('name,size,frames,flops,params,layers,stentr', [
    ('E3D-S', 160, 13, 1863680000, 1976232, 83, 202.8559146389),
    ('E3D-M', 224, 16, 4642910720, 1840680, 83, 204.9404058703),
    ('E3D-L', 312, 16, 18340335744, 4097744, 167, 411.8081687491),
])
def test_json_presets(capsys, name, size, frames, flops, params, layers,
                      stentr):
    code = analyze_main()([name, '--image-size', str(size), '--frames',
                           str(frames), '--json'])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)  # exactly one JSON object
    assert (result['flops'], result['params'], result['layers']) == (
        flops, params, layers)
    assert result['stentr'] == pytest.approx(stentr, rel=1e-9)
    assert len(result['blocks']) == 7


def test_table_and_files(capsys, tmp_path, structure_of):
    path = save_structure(structure_of('btn', se=0.25),
                          str(tmp_path / 's.json'))
    assert analyze_main()([path, '--image-size', '32', '48',
                           '--frames', '4']) == 0
    out = capsys.readouterr().out
    assert 'clip 4x32x48' in out
    assert out.splitlines()[2].split()[:4] == ['0', 'conv', '1', '8x4x16x24']
    assert out.splitlines()[-2].startswith('total')
    reference = osp.join(ROOT, 'e3d_plugin', 'presets', 'E3D_S.txt')
    assert analyze_main()([reference, '--image-size', '160', '--frames',
                           '13', '--json', '--score-cfg', 'refine=False']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['flops'] == 1863680000
    assert result['stentr'] == pytest.approx(183.3612727275416, rel=1e-9)


@pytest.mark.parametrize('args,message', [
    (['nope'], "error: 'nope' is neither a preset"),
    (['E3D-M', '--frames', '0'], 'error: --frames must be a positive'),
    (['E3D-M', '--score-cfg', 'type=Nope'],
     "error: unknown score type 'Nope'; registered: RandomScore, "
     'STEntrScore'),
    (['E3D-M', '--score-cfg', 'stage_weights=(1,1)'],
     'error: STEntrScore: the structure has 5 stages'),
])
def test_errors_one_line_exit_2(capsys, args, message):
    assert analyze_main()(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count('\n') == 1


def test_cli_bad_file_no_traceback(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('[{"kind": "conv", "in": 3, "out": 8, "k": 2}]')
    proc = subprocess.run([sys.executable, TOOL, str(bad), '--json'],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ''
    assert proc.stderr.strip() == (
        f"error: {bad}: block 0 (conv): field 'k' must be an odd positive "
        'kernel size (1, 3, 5, ...), got 2')
