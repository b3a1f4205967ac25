"""Hostile inputs of the ONNX export, the stream tool, the data generator
and the benches: each ends with one line ``error: ...`` and exit code 2, no
traceback, and leaves every existing file as it was (checked by sha256);
size arguments are bounded before anything is allocated (checked under a
memory limit); malicious checkpoints stay refused."""
import json
import os
import os.path as osp
import resource
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT, checksums, load_tool

CAUSAL = osp.join(ROOT, 'configs', 'e3d',
                  'e3d_xs-causal_8x4x1_synthetic-motion.py')
PLAIN = osp.join(ROOT, 'configs', 'e3d', 'e3d_xs_8x4x1_synthetic-motion.py')
EXPORT = osp.join(ROOT, 'tools', 'deploy', 'export_onnx.py')
STREAM = osp.join(ROOT, 'tools', 'deploy', 'stream.py')
GENERATOR = osp.join(ROOT, 'tools', 'data', 'synthetic_motion.py')
#: Address space of the memory test's process: enough to import torch,
#: mmaction2 and onnxruntime, far from what an unbounded size would take.
MEMORY_LIMIT = 4 << 30


class Evil:
    """Runs a command when unpickled (what weights_only loading refuses)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """One folder of inputs shared by the cases: a checkpoint of the causal
    E3D-XS config, videos, label maps, a config naming a structure file,
    malicious and damaged files, a folder, a link to the checkpoint."""
    import torch

    from e3d_plugin.datasets.synthetic_motion import render, write_video
    from e3d_plugin.deploy import build_recognizer
    root = tmp_path_factory.mktemp('hostile')
    model = build_recognizer(CAUSAL)
    torch.save({'state_dict': model.state_dict()}, root / 'xs.pth')
    write_video(str(root / 'v.mp4'),
                render(np.random.default_rng(1), 1, 32, 64), 8)
    write_video(str(root / 'short.mp4'),
                render(np.random.default_rng(2), 2, 4, 64), 8)
    torch.save({'state_dict': Evil(root / 'PWNED')}, root / 'evil.pth')
    (root / 'binary.txt').write_bytes(bytes(range(256)) * 4)
    (root / 'short_labels.txt').write_text('move_left\n')
    (root / 'empty.txt').write_text('')
    (root / 'adir').mkdir()
    os.symlink('xs.pth', root / 'link.onnx')
    structure = osp.join(ROOT, 'e3d_plugin', 'presets', 'E3D_XS.json')
    with open(structure) as f:
        (root / 'xs.json').write_text(f.read())
    (root / 'structured.py').write_text(
        f'_base_ = [{CAUSAL!r}]\n'
        "model = dict(backbone=dict(arch=None, structure_file='xs.json'))\n")
    return root


def run_main(path, argv, capfd):
    """``main(argv)`` of the tool or bench at ``path``: (exit code, lines
    of stderr)."""
    try:
        code = load_tool(path).main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    return code, capfd.readouterr().err.strip().splitlines()


def assert_refused(code, lines, message):
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith('error: ' + message), lines[0]
    assert 'Traceback' not in lines[0]


def run_case(files, path, argv, message, capfd, cwd=None):
    """Run a case in ``files`` (the working folder); check the one line
    and that no file under ``files`` was created, changed or deleted."""
    names = {'root': str(files)}
    argv = [a.format(**names) for a in argv]
    before = checksums(files)
    old = os.getcwd()
    os.chdir(cwd or files)
    try:
        code, lines = run_main(path, argv, capfd)
    finally:
        os.chdir(old)
    assert_refused(code, lines, message.format(**names))
    assert checksums(files) == before
    assert not osp.exists(files / 'PWNED')


# ------------------------------------------------------------- export_onnx
C = CAUSAL
EXPORT_CASES = [
    # outputs that are inputs
    ([C, 'xs.pth', '--out', 'xs.pth'],
     "--out 'xs.pth' is the checkpoint this run reads; choose another file "
     'name'),
    ([C, 'xs.pth', '--out', 'link.onnx'],
     "--out 'link.onnx' is the checkpoint this run reads"),
    ([C, 'xs.pth', '--out', C], f"--out '{C}' is the config this run reads"),
    ([C, 'xs.pth', '--out', 'v.mp4', '--video', 'v.mp4'],
     "--out 'v.mp4' is the video this run reads"),
    ([C, 'xs.pth', '--out', 'm.onnx', '--stream-out', 'adir/../m.onnx',
      '--video', 'v.mp4'],
     "--out and --stream-out both name 'm.onnx'; give two files"),
    ([C, 'xs.pth', '--out', 'm.onnx', '--stream-out', 'xs.pth', '--video',
      'v.mp4'], "--stream-out 'xs.pth' is the checkpoint this run reads"),
    (['structured.py', '--out', 'xs.json'],
     "--out 'xs.json' is the structure file this run reads"),
    # outputs that cannot be written
    ([C, 'xs.pth', '--out', 'adir'],
     "--out 'adir' is a directory; give a file name"),
    ([C, 'xs.pth', '--out', 'new/'],
     "--out 'new/' ends with '/'; give a file name"),
    ([C, 'xs.pth', '--out', ''], '--out must not be empty'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--stream-out', ''],
     '--stream-out must not be empty'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--stream-out', 'adir'],
     "--stream-out 'adir' is a directory"),
    ([C, 'xs.pth', '--out', 'xs.pth/m.onnx'],
     "--out 'xs.pth/m.onnx' cannot be created: '{root}/xs.pth' is a file, "
     'not a folder'),
    ([C, 'xs.pth', '--out', '/proc/m.onnx'],
     "--out '/proc/m.onnx' cannot be written: "),
    ([C, 'xs.pth', '--out', '/dev/null'],
     "--out '/dev/null' is not a regular file"),
    ([C, 'xs.pth', '--out', 'a' * 300 + '.onnx'],
     "--out 'aaaa"),
    ([C, 'xs.pth', '--out', 'a\nb.onnx'],
     "--out 'a\\nb.onnx' holds a control character"),
    ([C, 'xs.pth', '--out', 'binary.txt'],
     "--out 'binary.txt' exists and is not an .onnx file"),
    # size arguments
    ([C, 'xs.pth', '--out', 'm.onnx', '--chunk', '100000'],
     '--chunk must be in 1..256, got 100000'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--chunk', '0'],
     '--chunk must be in 1..256, got 0'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--stream-out', 's.onnx', '--video',
      'short.mp4', '--chunk', '3'],
     "--chunk 3 is more than the 1 frame(s) of 'short.mp4' (every 4)"),
    ([C, 'xs.pth', '--out', 'm.onnx', '--batch', '100000'],
     '--batch must be in 1..256, got 100000'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--clip', '4096', '4096', '4096'],
     '1 clip(s) of 4096x4096x4096 (T H W) are 68719476736 voxels, more '
     'than the 8388608 the export takes'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--batch', '256', '--clip', '16',
      '64', '64'],
     '256 clip(s) of 16x64x64 (T H W) are 16777216 voxels, more than the '
     '8388608'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--rounds', '1000000000'],
     '--rounds must be in 1..1000, got 1000000000'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--rounds', '0'],
     '--rounds must be in 1..1000, got 0'),
    # values that raised
    ([C, '--out', 'm.onnx', '--seed', str(10**23)],
     '--seed must be in 0..4294967295, got 100000000000000000000000'),
    ([C, '--out', 'm.onnx', '--seed', '-5'],
     '--seed must be in 0..4294967295, got -5'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--atol', 'nan'],
     '--atol must be a finite number >= 0, got nan'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--atol', '-1'],
     '--atol must be a finite number >= 0, got -1.0'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--opset', str(10**20)],
     'opset must be an int in 11..20, got 100000000000000000000'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--stream-out', 's.onnx'],
     '--stream-out checks over a video: give --video'),
    ([PLAIN, '--out', 'm.onnx', '--stream-out', 's.onnx', '--video',
      'v.mp4'], 'model: model.backbone: streaming needs a causal E3D'),
    # inputs that are not what they should be
    ([C, 'xs.pth', '--out', 'm.onnx', '--video', 'adir'],
     "video 'adir' is a directory, not a file"),
    ([C, 'xs.pth', '--out', 'm.onnx', '--video', ''], 'video path is empty'),
    ([C, 'xs.pth', '--out', 'm.onnx', '--video', 'binary.txt'],
     "cannot decode video 'binary.txt'"),
    ([C, 'xs.pth', '--out', 'm.onnx', '--video', 'empty.txt'],
     "cannot decode video 'empty.txt' (RuntimeError: Error reading 0 "
     'bytes...)'),
    ([C, 'adir', '--out', 'm.onnx'],
     "checkpoint 'adir' is a directory, not a file"),
    ([C, 'binary.txt', '--out', 'm.onnx'],
     "cannot read checkpoint 'binary.txt'"),
    ([C, 'empty.txt', '--out', 'm.onnx'],
     "cannot read checkpoint 'empty.txt'"),
    ([C, 'v.mp4', '--out', 'm.onnx'], "cannot read checkpoint 'v.mp4'"),
    ([C, 'evil.pth', '--out', 'm.onnx'],
     "cannot read checkpoint 'evil.pth'"),
    (['adir', '--out', 'm.onnx'], "config 'adir' is a directory"),
    (['xs.pth', '--out', 'm.onnx'], "cannot load config 'xs.pth': OSError: "
     'Only py/yml/yaml/json type are supported now!'),
    (['binary.txt', '--out', 'm.onnx'], "cannot load config 'binary.txt'"),
    ([C, '--out', 'm.onnx', '--cfg-options', 'space=5'],
     "--cfg-options: the config has no key 'space'; its keys are "),
    ([C, '--out', 'm.onnx', '--cfg-options', 'model.backbone.arch=E3D-ZZ'],
     "model: arch 'E3D-ZZ' is not a preset; choose one of"),
    ([C, '--out', 'm.onnx', '--cfg-options', 'model.backbone=5'],
     "model.backbone must be a dict with a 'type', got 5 (int)"),
]


@pytest.mark.parametrize('argv,message', EXPORT_CASES)
def test_export_refuses(files, capfd, argv, message):
    pytest.importorskip('onnxruntime')
    run_case(files, EXPORT, argv, message, capfd)


def test_export_to_an_existing_onnx_replaces_it_whole(files, capfd,
                                                      tmp_path):
    """A good export over an existing ONNX file replaces it (written under
    a temporary name, renamed when complete); a refused one leaves it."""
    pytest.importorskip('onnxruntime')
    out = tmp_path / 'm.onnx'
    out.write_bytes(b'old')
    code, lines = run_main(EXPORT, [
        CAUSAL, str(files / 'xs.pth'), '--out', str(out), '--clip', '2',
        '32', '32', '--rounds', '1'], capfd)
    assert code == 0, lines
    assert out.read_bytes() != b'old' and out.stat().st_size > 100_000
    assert sorted(os.listdir(tmp_path)) == ['m.onnx']


# ----------------------------------------------------------------- stream
S = [CAUSAL, 'xs.pth']
STREAM_CASES = [
    (S + ['v.mp4', '--device', 'foo'],
     "--device 'foo': give cpu, cuda or cuda:N"),
    (S + ['v.mp4', '--device', ''], "--device '': give cpu, cuda or cuda:N"),
    (S + ['v.mp4', '--device', 'meta'],
     "--device 'meta': give cpu, cuda or cuda:N"),
    (S + ['v.mp4', '--device', 'mps'],
     "--device 'mps': give cpu, cuda or cuda:N"),
    (S + ['v.mp4', '--device', 'cpu:3'],
     "--device 'cpu:3': give cpu, cuda or cuda:N"),
    (S + ['v.mp4', '--label-map', 'binary.txt'],
     "label map 'binary.txt' is not UTF-8 text"),
    (S + ['v.mp4', '--label-map', 'short_labels.txt'],
     "label map 'short_labels.txt' names 1 class(es), the model has 10"),
    (S + ['v.mp4', '--label-map', 'empty.txt'],
     "label map 'empty.txt' names 0 class(es), the model has 10"),
    (S + ['v.mp4', '--label-map', 'adir'],
     "label map 'adir' is a directory, not a file"),
    (S + ['v.mp4', '--label-map', ''], 'label map path is empty'),
    (S + ['v.mp4', '--chunk', '0'], '--chunk must be >= 1'),
    (S + ['v.mp4', '--every', '-1'], '--every must be >= 1'),
    (S + ['v.mp4', '--topk', '0'], '--topk must be >= 1'),
    (S + ['v.mp4', '--frame-interval', '0'], '--frame-interval must be >= 1'),
    (S + ['adir'], "video 'adir' is a directory, not a file"),
    (S + ['binary.txt'], "cannot decode video 'binary.txt'"),
    (S + ['empty.txt'], "cannot decode video 'empty.txt'"),
    (S + [''], 'video path is empty'),
    ([CAUSAL, 'adir', 'v.mp4'],
     "checkpoint 'adir' is a directory, not a file"),
    ([CAUSAL, 'evil.pth', 'v.mp4'], "cannot read checkpoint 'evil.pth'"),
    ([CAUSAL, 'binary.txt', 'v.mp4'], "cannot read checkpoint 'binary.txt'"),
    (['adir', 'xs.pth', 'v.mp4'], "config 'adir' is a directory"),
    ([PLAIN, 'xs.pth', 'v.mp4'],
     'model: model.backbone: streaming needs a causal E3D backbone'),
    (S + ['v.mp4', '--cfg-options', 'space=5'],
     "--cfg-options: the config has no key 'space'; its keys are "),
    (S + ['v.mp4', '--cfg-options', 'model.cls_head.num_classes=3'],
     "checkpoint 'xs.pth' does not match the config's model"),
]


@pytest.mark.parametrize('argv,message', STREAM_CASES)
def test_stream_refuses(files, capfd, argv, message):
    run_case(files, STREAM, argv, message, capfd)


@pytest.mark.parametrize('extra', [
    ['--chunk', str(10**20)], ['--frame-interval', str(10**23)],
    ['--every', str(10**20), '--topk', str(10**20)],
])
def test_stream_takes_huge_counts_as_their_limit(files, capfd, extra):
    """A chunk or interval past the video's end is the whole video or its
    first frame; --every and --topk past the end print the last frame and
    every class."""
    code, lines = run_main(STREAM, [CAUSAL, str(files / 'xs.pth'),
                                    str(files / 'v.mp4')] + extra, capfd)
    assert code == 0, lines
    out = capfd.readouterr()
    assert 'Traceback' not in out.err


def test_the_malicious_checkpoint_would_run_a_command(files, tmp_path):
    """The refused evil.pth of the cases is live: unpickled without
    weights_only it runs its command."""
    import torch
    marker = tmp_path / 'ran'
    torch.save(Evil(marker), tmp_path / 'evil.pth')
    torch.load(tmp_path / 'evil.pth', weights_only=False)
    assert osp.exists(marker)


# --------------------------------------------------------------- generator
@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """A small dataset written by the generator (with its dataset.json)."""
    from e3d_plugin.datasets.synthetic_motion import generate
    root = tmp_path_factory.mktemp('generated')
    generate(str(root / 'ds'), num_videos=20, size=32, frames=4, seed=0)
    (root / 'odd' / 'dataset.json').mkdir(parents=True)
    return root


SMALL = ['--num-videos', '20', '--size', '32', '--frames', '4']
GENERATOR_CASES = [
    # an existing dataset another run would change
    (['--out', 'ds'] + SMALL + ['--seed', '1'],
     "--out 'ds' holds a dataset of other settings (seed 0, not 1); give "
     '--overwrite to replace it, or another folder'),
    (['--out', 'ds', '--num-videos', '20', '--size', '40', '--frames', '4'],
     "--out 'ds' holds a dataset of other settings (size 32, not 40)"),
    (['--out', 'ds', '--preset', 'hard', '--num-videos', '40', '--size',
      '32', '--frames', '4'],
     "--out 'ds' holds a dataset of other settings (preset 'basic', not "
     "'hard'; num_videos 20, not 40)"),
    (['--out', 'ds', '--num-videos', '30', '--size', '32', '--frames', '4'],
     "--out 'ds' holds a dataset of other settings (num_videos 20, not 30)"),
    (['--out', 'ds'] + SMALL + ['--fps', '25'],
     "--out 'ds' holds a dataset of other settings (fps 16, not 25)"),
    (['--out', 'ds/videos'] + SMALL,
     "--out 'ds/videos' is a folder of other files"),
    (['--out', '.'] + SMALL, "--out '.' is a folder of other files"),
    (['--out', 'odd'] + SMALL,
     "--out 'odd' holds 'dataset.json', which is not a file"),
    # outputs that cannot be written
    (['--out', ''] + SMALL, '--out must not be empty'),
    (['--out', 'ds/train_list.txt'] + SMALL,
     "--out 'ds/train_list.txt' is a file, not a folder"),
    (['--out', 'ds/train_list.txt/x'] + SMALL,
     "--out 'ds/train_list.txt/x' cannot be created: "),
    (['--out', 'new\nline'] + SMALL, "--out 'new\\nline' holds a control"),
    # sizes
    (['--out', 'new', '--frames', '1000000000'],
     'frames must be at most 4096, got 1000000000'),
    (['--out', 'new', '--size', '1000000'],
     'size must be at most 1024, got 1000000'),
    (['--out', 'new', '--size', '1024', '--frames', '4096'],
     'frames x size x size is 4294967296 pixels per video (4096 frames of '
     '1024x1024), at most 67108864'),
    (['--out', 'new', '--num-videos', str(10**11)],
     'num_videos must be at most 100000, got 100000000000'),
    (['--out', 'new', '--fps', '1000000000'] + SMALL,
     'fps must be at most 1000, got 1000000000'),
    (['--out', 'new', '--fps', '0'] + SMALL,
     'fps must be an integer >= 1, got 0'),
    (['--out', 'new', '--seed', '-1'] + SMALL,
     'seed must be an integer >= 0, got -1'),
    (['--out', 'new', '--seed', str(10**30)] + SMALL,
     'seed must be at most 4294967295, got 10000000000000000000...'),
    (['--out', 'new', '--size', '8'] + SMALL[:2],
     'size must be an integer >= 16, got 8'),
]


@pytest.mark.parametrize('argv,message', GENERATOR_CASES)
def test_generator_refuses(dataset, capfd, argv, message):
    run_case(dataset, GENERATOR, argv, message, capfd)


def test_generator_rerun_same_settings_writes_nothing(dataset, capfd):
    before = checksums(dataset)
    old = os.getcwd()
    os.chdir(dataset)
    try:
        code = load_tool(GENERATOR).main(['--out', 'ds'] + SMALL)
    finally:
        os.chdir(old)
    assert code == 0
    assert capfd.readouterr().out.strip() == (
        'ds already holds this dataset (10 train and 10 val videos, seed 0): '
        'nothing written')
    assert checksums(dataset) == before


def test_generator_refuses_a_dataset_of_unknown_settings(tmp_path, capfd):
    """A dataset without dataset.json (an older generator's) is refused
    whatever the settings; --overwrite rebuilds it and keeps other files."""
    from e3d_plugin.datasets.synthetic_motion import generate
    out = tmp_path / 'old'
    generate(str(out), num_videos=20, size=32, frames=4)
    os.remove(out / 'dataset.json')
    (out / 'videos' / 'notes.txt').write_text('mine')
    before = checksums(tmp_path)
    code, lines = run_main(GENERATOR, ['--out', str(out)] + SMALL, capfd)
    assert_refused(code, lines, f"--out '{out}' holds a dataset without "
                   'dataset.json (an older generator\'s), whose settings are '
                   'unknown; give --overwrite')
    assert checksums(tmp_path) == before
    code, lines = run_main(GENERATOR, ['--out', str(out), '--overwrite'] +
                           SMALL + ['--seed', '3'], capfd)
    assert code == 0, lines
    with open(out / 'dataset.json') as f:
        assert json.load(f)['seed'] == 3
    assert (out / 'videos' / 'notes.txt').read_text() == 'mine'


def test_generator_overwrite_replaces_and_leaves_no_stale_video(tmp_path,
                                                                capfd):
    from e3d_plugin.datasets.synthetic_motion import generate
    out = tmp_path / 'ds'
    generate(str(out), num_videos=30, size=32, frames=4)
    code, lines = run_main(GENERATOR, ['--out', str(out), '--overwrite'] +
                           SMALL + ['--seed', '5'], capfd)
    assert code == 0, lines
    listed = set()
    for split in ('train', 'val'):
        with open(out / f'{split}_list.txt') as f:
            listed |= {line.split()[0] for line in f if line.strip()}
    assert set(os.listdir(out / 'videos')) == listed
    assert len(listed) == 20


# ------------------------------------------------------------------ benches
def bench(name):
    return osp.join(ROOT, 'bench', name + '.py')


BENCH_CASES = [
    ('stream_speed', ['--rounds', '0'],
     'argument --rounds: must be in 1..1000, got 0'),
    ('stream_speed', ['--arch', 'E3D-ZZ'], "argument --arch: invalid choice:"),
    ('stream_speed', ['--chunk', '0'],
     'argument --chunk: must be in 1..1024, got 0'),
    ('stream_speed', ['--frames', '0'],
     'argument --frames: must be in 1..1024, got 0'),
    ('stream_speed', ['--size', '100000'],
     'argument --size: must be in 1..1024, got 100000'),
    ('stream_speed', ['--rounds', str(10**12)],
     'argument --rounds: must be in 1..1000, got 1000000000000'),
    ('stream_speed', ['--threads', '-1'],
     'argument --threads: must be in 0..1024, got -1'),
    ('stream_speed', ['--device', 'foo', '--arch', 'E3D-XS'],
     "--device 'foo': give cpu, cuda or cuda:N"),
    ('stream_speed', ['--frames', '1024', '--size', '1024'],
     'a clip of 1024x1024x1024 is 1073741824 voxels, more than the '
     '16777216'),
    ('stream_speed', ['--size', 'abc'], "argument --size: not an integer: "
     "'abc'"),
    ('onnx_speed', ['--rounds', '0'],
     'argument --rounds: must be in 1..1000, got 0'),
    ('onnx_speed', ['--models', 'E3D-ZZ'],
     "--models: unknown preset 'E3D-ZZ'"),
    ('onnx_speed', ['--models', ''],
     'nothing to measure: give --models or --structure'),
    ('onnx_speed', ['--models', 'E3D-XS', '--clip', '4096', '4096', '4096'],
     'E3D-XS: 1 clip(s) of 4096x4096x4096'),
    ('onnx_speed', ['--clip', '0', '32', '32'],
     'argument --clip: must be in 1..4096, got 0'),
    ('onnx_speed', ['--threads', '-1'],
     'argument --threads: must be in 0..1024, got -1'),
    ('onnx_speed', ['--models', '', '--structure', 'x=adir'],
     "--structure x: structure file 'adir' is a directory, not a file"),
    ('onnx_speed', ['--models', '', '--structure', 'x=binary.txt'],
     '--structure x: binary.txt: not UTF-8 text (byte 0x80 at offset 128)'),
    ('onnx_speed', ['--models', '', '--structure', 'x='],
     "--structure 'x=': give NAME=FILE"),
    ('onnx_speed', ['--device', 'foo'],
     "--device 'foo': give cpu, cuda or cuda:N"),
    ('cost_speed', ['--number', '0'],
     'argument --number: must be in 1..1000000, got 0'),
    ('cost_speed', ['--repeat', '0'],
     'argument --repeat: must be in 1..100, got 0'),
    ('cost_speed', ['--rounds', '0', '--baseline', 'HEAD'],
     'argument --rounds: must be in 1..1000, got 0'),
    ('cost_speed', ['--number', str(10**14)],
     'argument --number: must be in 1..1000000, got 100000000000000'),
    ('cost_speed', ['--baseline', 'no-such-revision-x', '--rounds', '1'],
     '--baseline no-such-revision-x is neither a folder holding e3d_plugin '
     'nor a revision of this repository'),
    ('search_speed', ['--baseline', 'no-such-revision-x'],
     '--baseline no-such-revision-x: not a revision of this repository'),
    ('search_speed', ['--rounds', '0'],
     'argument --rounds: must be in 1..1000, got 0'),
    ('search_speed', ['--baseline', 'none', '--config', 'zz'],
     "--config 'zz': no configs/search_e3d_zz.py in this tree"),
    ('search_speed', ['--num-candidates', '0'],
     'argument --num-candidates: must be in 1..10000000, got 0'),
    ('search_speed', ['--seed', '-1'],
     'argument --seed: must be in 0..4294967295, got -1'),
    ('latency_accuracy', ['--rounds', '0'],
     'argument --rounds: must be in 1..1000, got 0'),
    ('latency_accuracy', ['--random', '0', '--networks', 'E3D-XS'],
     "--networks 'E3D-XS': give NAME:TxS, e.g. E3D-XS:8x64"),
    ('latency_accuracy', ['--random', '0', '--networks', 'E3D-ZZ:2x32'],
     "--networks 'E3D-ZZ:2x32': "),
    ('latency_accuracy', ['--batch', '0'],
     'argument --batch: must be in 1..1024, got 0'),
    ('latency_accuracy', ['--threads', '0'],
     'argument --threads: must be in 1..1024, got 0'),
    ('latency_accuracy', ['--random', '0', '--timing', 'repeat=abc',
                          '--networks', 'E3D-XS:2x32'],
     "--timing repeat must be a number in 1..1000, got 'abc'"),
    ('latency_accuracy', ['--random', '0', '--timing', 'speed=1',
                          '--networks', 'E3D-XS:2x32'],
     "--timing 'speed=1': give KEY=VALUE with KEY one of"),
    ('latency_accuracy', ['--random', '0', '--table', 'adir', '--networks',
                          'E3D-XS:2x32'],
     "--table 'adir' is a directory; give a file name"),
    ('latency_accuracy', ['--random', '0', '--table', 'binary.txt',
                          '--networks', 'E3D-XS:2x32', '--rounds', '1'],
     "--table 'binary.txt' is not an E3D latency table (UnicodeDecodeError)"),
    ('latency_accuracy', ['--random', '0', '--table', 'xs.json',
                          '--networks', 'E3D-XS:2x32', '--rounds', '1'],
     "--table 'xs.json' is not an E3D latency table; give a table"),
    ('latency_accuracy', ['--random', '-1'],
     'argument --random: must be in 0..1000, got -1'),
    ('latency_accuracy', ['--random', '0', '--networks'],
     'nothing to time: give --networks or --random'),
    ('latency_accuracy', ['--random', '0', '--device', 'foo', '--networks',
                          'E3D-XS:2x32'],
     "--device 'foo': give cpu, cuda or cuda:N"),
    ('latency_accuracy', ['--random', '0', '--batch', '1000', '--networks',
                          'E3D-XS:1024x1024'],
     '--networks E3D-XS:1024x1024 at --batch 1000 is 1073741824000 voxels'),
    ('study_speed', ['--baseline', 'no-such-revision-x', '--data-root',
                     'ds', '--work-dir', 'w'],
     '--baseline no-such-revision-x: not a revision of this repository'),
    ('study_speed', ['--only', 'new', '--data-root', 'ds', '--work-dir',
                     'ds/train_list.txt'],
     "--work-dir 'ds/train_list.txt' is a file, not a folder"),
    ('study_speed', ['--only', 'new', '--data-root', 'ds', '--work-dir', 'w',
                     '--configs', 'none.py'],
     "--configs: no config 'none.py' in this tree"),
    ('study_speed', ['--report-only', '--work-dir', 'bad_results'],
     'bad_results/study_speed.jsonl is damaged'),
    ('study_speed', ['--rounds', '0'],
     'argument --rounds: must be in 1..1000, got 0'),
    ('study_speed', ['--epochs', '1'],
     'argument --epochs: must be in 2..1000, got 1'),
    ('study_speed', ['--data-root', 'adir', '--work-dir', 'w'],
     "--data-root 'adir' holds no hard benchmark"),
    ('backbone_speed', ['--batch', '1000000000'],
     'argument --batch: must be in 1..1024, got 1000000000'),
    ('backbone_speed', ['--size', '1000000'],
     'argument --size: must be in 1..1024, got 1000000'),
    ('backbone_speed', ['--batch', '1024', '--size', '1024'],
     '--batch x --frames x --size x --size is 17179869184 voxels, more than '
     'the 16777216 a step takes'),
    ('backbone_speed', ['--json', 'adir'],
     "--json 'adir' is a directory; give a file name"),
    ('backbone_speed', ['--threads', str(10**11)],
     'argument --threads: must be in 1..1024, got 100000000000'),
    ('backbone_speed', ['--rounds', str(10**11)],
     'argument --rounds: must be in 1..1000, got 100000000000'),
    ('backbone_speed', ['--lr', 'nan'],
     "argument --lr: must be a finite number >= 0, got nan"),
    ('e3d_vs_x3d', ['--seeds', '0', '--work-dir', 'w'],
     '--seeds must be an integer >= 1, got 0'),
    ('e3d_vs_x3d', ['--epochs', '0', '--work-dir', 'w'],
     '--epochs must be an integer >= 1, got 0'),
    ('e3d_vs_x3d', ['--epochs', str(10**6), '--work-dir', 'w'],
     '--epochs must be at most 1000, got 1000000'),
    ('e3d_vs_x3d', ['--report-only', '--work-dir', 'bad_results'],
     '--report-only: {root}/bad_results/settings.json is unreadable'),
    ('e3d_vs_x3d', ['--seeds', '1', '--work-dir', 'ds/train_list.txt'],
     "--work-dir 'ds/train_list.txt' is a file"),
    ('e3d_vs_x3d', ['--seeds', '1', '--data-root', 'adir', '--work-dir',
                    'w'], "--data-root '{root}/adir' holds no hard benchmark "
     '(train_list.txt, val_list.txt, videos/)'),
    ('e3d_vs_x3d', ['--seeds', str(10**9), '--work-dir', 'w'],
     '--seeds must be at most 1000, got 1000000000'),
    ('e3d_vs_x3d', ['--write', '--work-dir', 'w'],
     '--write goes with --draw-random'),
]


@pytest.fixture(scope='module')
def bench_files(files, dataset):
    """The inputs, a dataset and a damaged results file, in one folder."""
    root = files
    if not osp.exists(root / 'ds'):
        os.symlink(dataset / 'ds', root / 'ds')
    (root / 'bad_results').mkdir(exist_ok=True)
    (root / 'bad_results' / 'study_speed.jsonl').write_text('{"round": 0}\n')
    (root / 'bad_results' / 'settings.json').write_text('{"seeds": ')
    return root


@pytest.mark.parametrize('name,argv,message', BENCH_CASES)
def test_bench_refuses(bench_files, capfd, name, argv, message):
    run_case(bench_files, bench(name), argv, message, capfd)


# ------------------------------------------------------------------ memory
#: Runs tools in one process (one import of torch for all the cases):
#: prints ``[exit code, stderr]`` per case as JSON.
DRIVER = """
import contextlib, io, json, sys
sys.path.insert(0, {root!r})
from tests.helpers import load_tool
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = load_tool(argv[0]).main(argv[1:])
        except SystemExit as e:
            code = e.code
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""

MEMORY_CASES = [
    ([EXPORT, CAUSAL, 'xs.pth', '--out', 'm.onnx', '--stream-out', 's.onnx',
      '--video', 'v.mp4', '--chunk', '100000'],
     '--chunk must be in 1..256, got 100000'),
    ([EXPORT, CAUSAL, 'xs.pth', '--out', 'm.onnx', '--clip', '2000', '1000',
      '1000'], '1 clip(s) of 2000x1000x1000 (T H W) are 2000000000 voxels'),
    ([EXPORT, CAUSAL, 'xs.pth', '--out', 'm.onnx', '--batch', '100000'],
     '--batch must be in 1..256, got 100000'),
    ([GENERATOR, '--out', 'new', '--frames', '1000000000', '--size', '32'],
     'frames must be at most 4096, got 1000000000'),
    ([GENERATOR, '--out', 'new', '--size', '100000', '--frames', '4'],
     'size must be at most 1024, got 100000'),
    ([GENERATOR, '--out', 'new', '--num-videos', str(10**12)],
     'num_videos must be at most 100000, got 1000000000000'),
    ([bench('backbone_speed'), '--batch', '1000000000', '--size', '32'],
     'argument --batch: must be in 1..1024, got 1000000000'),
    ([bench('stream_speed'), '--arch', 'E3D-XS', '--frames', '100000000',
      '--size', '32'], 'argument --frames: must be in 1..1024'),
    ([bench('onnx_speed'), '--models', 'E3D-XS', '--clip', '1024', '1024',
      '1024'], 'E3D-XS: 1 clip(s) of 1024x1024x1024'),
    ([bench('latency_accuracy'), '--random', '0', '--batch', '1024',
      '--networks', 'E3D-XS:64x1024'], '--networks E3D-XS:64x1024 at '
     '--batch 1024 is'),
]


def test_sizes_refused_before_allocating(files):
    """Every huge size is one line before any allocation: the tools run
    with 4 GiB of address space (an unbounded size takes far more and
    fails with a traceback), within seconds, creating nothing."""
    pytest.importorskip('onnxruntime')

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    before = checksums(files)
    proc = subprocess.run(
        [sys.executable, '-c', DRIVER.format(root=ROOT),
         json.dumps([argv for argv, _ in MEMORY_CASES])], cwd=files,
        capture_output=True, text=True, timeout=300, preexec_fn=cap)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for (argv, message), (code, err) in zip(MEMORY_CASES, results):
        assert_refused(code, err.strip().splitlines(), message)
    assert checksums(files) == before
