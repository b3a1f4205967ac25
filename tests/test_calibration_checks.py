"""bench/calibration_checks.py: the single-frame variant and the runs of a
benchmark setting's reference checks (no training)."""
import json
import os.path as osp

import pytest

from tests.helpers import ROOT, load_tool

BENCH = load_tool(osp.join(ROOT, 'bench', 'calibration_checks.py'))
HARD = osp.join(ROOT, 'configs', 'e3d', 'e3d_xs_8x4x1_motion-hard.py')


def test_single_frame_sets_every_sample_frames():
    from e3d_plugin.launch import load_config
    options = BENCH.single_frame_options(load_config(HARD))
    assert options == {
        'train_dataloader.dataset.pipeline.1.clip_len': 1,
        'val_dataloader.dataset.pipeline.1.clip_len': 1,
        'test_dataloader.dataset.pipeline.1.clip_len': 1,
    }
    cfg = load_config(HARD, options)
    for split in ('train', 'val', 'test'):
        step = cfg[f'{split}_dataloader'].dataset.pipeline[1]
        assert step.type == 'SampleFrames' and step.clip_len == 1
        assert step.frame_interval == 4


def test_runs_of_a_setting(tmp_path):
    setting = {'train_cfg.max_epochs': 16}
    runs = BENCH.plan_runs(HARD, str(tmp_path), setting, seeds=2,
                           first_seed=5, single_frame_seeds=1)
    assert [(r.key['model'], r.key['seed']) for r in runs] == [
        ('e3d-xs', 5), ('e3d-xs', 6), ('single-frame', 5)]
    assert runs[0].cfg_options == {'train_cfg.max_epochs': 16,
                                   'randomness.seed': 5}
    assert runs[2].cfg_options[
        'train_dataloader.dataset.pipeline.1.clip_len'] == 1
    assert runs[2].cfg_options['train_cfg.max_epochs'] == 16
    assert runs[1].write_config(str(tmp_path)) == HARD
    assert runs[2].run_dir == str(tmp_path / 'runs' / 'single-frame_seed5')


def test_table_of_finished_runs(tmp_path):
    runs = BENCH.plan_runs(HARD, str(tmp_path), seeds=1)
    record = dict(model='e3d-xs', seed=0, final=0.8, best=0.85,
                  curve=[0.5, 0.7, 0.8, 0.9], elapsed_s=240.0)
    finished = {('e3d-xs', 0): record}
    lines = BENCH.format_rows(runs, finished).splitlines()
    assert lines[2] == '| e3d-xs | 0 | 80.0 % | 85.0 % | 4.0 |'
    assert lines[3] == '| single-frame | 0 | not trained | | |'
    lines = BENCH.format_rows(runs, finished, final_epochs=3).splitlines()
    assert lines[2] == '| e3d-xs | 0 | 80.0 % | 85.0 % | 4.0 |'
    assert 'mean of last 3' in lines[0]
    record['curve'] = [0.5, 0.6, 0.9, 0.9]
    lines = BENCH.format_rows(runs, finished, final_epochs=2).splitlines()
    assert lines[2] == '| e3d-xs | 0 | 90.0 % | 85.0 % | 4.0 |'


def test_report_reads_the_queue_results(tmp_path, capsys):
    record = dict(model='single-frame', seed=0, status='done', final=0.05,
                  best=0.07, curve=[0.05], elapsed_s=60.0)
    (tmp_path / 'results.jsonl').write_text(json.dumps(record) + '\n')
    code = BENCH.main(['--report-only', '--work-dir', str(tmp_path),
                       '--seeds', '1'])
    out = capsys.readouterr().out.splitlines()
    assert code == 1  # e3d-xs seed 0 is not trained
    assert out[2] == '| e3d-xs | 0 | not trained | | |'
    assert out[3] == '| single-frame | 0 | 5.0 % | 7.0 % | 1.0 |'


@pytest.mark.parametrize('argv,message', [
    (['--seeds', '0'], 'error: --seeds must be an integer in [1, 16], got 0'),
    (['--single-frame-seeds', '-1'], 'error: --single-frame-seeds must be '
     'an integer in [0, 16], got -1'),
    (['--final-epochs', '0'], 'error: --final-epochs must be an integer in '
     '[1, 1024], got 0'),
    (['--first-seed', '-3'], 'error: --first-seed must be an integer in [0, '
     '2**31), got -3'),
    (['--jobs', '0'], 'error: --jobs must be an integer >= 1, got 0'),
    (['--train-config', 'missing.py'], "error: --train-config: config file "
     "'missing.py' does not exist"),
])
def test_bad_arguments(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        code = BENCH.main(argv + ['--work-dir', str(tmp_path / 'w')])
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / 'w').exists()
