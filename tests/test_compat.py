"""Bridges of e3d_plugin._compat that are not covered elsewhere."""
import os

from mmengine.config import Config

from e3d_plugin.models import E3D
from tests.helpers import ROOT

INLINE = [
    {'kind': 'conv', 'in': 3, 'out': 8, 'k': 3, 'kt': 1, 's': 2},
    {'kind': 'dwbtn', 'in': 8, 'out': 16, 'k': 3, 'kt': 3, 's': 2, 'L': 2,
     'btn': 32},
    {'kind': 'conv', 'in': 16, 'out': 32, 'k': 1, 'kt': 1, 's': 1},
]


def test_config_with_inline_structure_prints_and_dumps(tmp_path):
    # 'in' is an identifier and a keyword: mmengine alone writes dict(in=3)
    cfg = Config(dict(
        model=dict(type='Recognizer3D',
                   backbone=dict(type='E3D', structure=INLINE),
                   cls_head=dict(type='I3DHead', in_channels=32,
                                 num_classes=5)),
        clip=(8, 64), note='x', nothing=None))
    text = cfg.pretty_text
    assert "'in': 3" in text and 'dict(in=' not in text
    path = tmp_path / 'dumped.py'
    cfg.dump(str(path))
    back = Config.fromfile(str(path))
    assert back.to_dict() == cfg.to_dict()
    backbone = E3D(**{k: v for k, v in back.model.backbone.items()
                      if k != 'type'})
    assert [b.to_dict() for b in backbone.structure] == [
        dict(b, L=b.get('L', 1)) for b in INLINE]


def test_configs_mmengine_can_print_keep_its_text():
    cfg = Config(dict(model=dict(type='E3D', arch='E3D-XS'), epochs=3))
    assert cfg.pretty_text == (
        "epochs = 3\nmodel = dict(arch='E3D-XS', type='E3D')\n")


# ----------------------------------------------------------------------
# transformers 5 beside mmaction2 1.2.0's multimodal models
def _fake_transformers(root, version, modules):
    """A ``transformers`` distribution of ``version`` under ``root``:
    ``modules`` maps a submodule path to its source."""
    package = root / 'transformers'
    package.mkdir(parents=True)
    (package / '__init__.py').write_text(f'__version__ = {version!r}\n')
    for name, source in modules.items():
        path = package.joinpath(*name.split('.'))
        path.mkdir(parents=True, exist_ok=True)
        (path / '__init__.py').write_text(source)
    info = root / f'transformers-{version}.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(
        f'Metadata-Version: 2.1\nName: transformers\nVersion: {version}\n')
    (info / 'top_level.txt').write_text('transformers\n')
    return str(root)


def _run(code, path):
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [path, ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(
            os.pathsep) if p]))
    return subprocess.run([sys.executable, '-c', code], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_import_works_beside_a_breaking_transformers(tmp_path):
    # a transformers 5 stand-in: installed (so mmaction2 imports its
    # multimodal models) but without what they import
    path = _fake_transformers(tmp_path, '5.0.0', {})
    broken = _run(
        # only the other bridges (the package itself would apply them all)
        'import importlib.util\n'
        "spec = importlib.util.spec_from_file_location('compat_only', "
        "'e3d_plugin/_compat.py')\n"
        'c = importlib.util.module_from_spec(spec)\n'
        'spec.loader.exec_module(c)\n'
        'c._bridge_importlib_metadata(); c._bridge_drn()\n'
        'import mmaction.models\n', path)
    assert broken.returncode != 0
    assert 'transformers' in broken.stderr.strip().splitlines()[-1]
    fixed = _run(
        'import e3d_plugin\n'
        'import mmaction.models\n'
        'from mmaction.registry import MODELS\n'
        "model = MODELS.build(dict(type='E3D', arch='E3D-XS'))\n"
        "print('E3D', sum(p.numel() for p in model.parameters()))\n"
        'try:\n'
        "    MODELS.build(dict(type='VindLUVQA'))\n"
        'except ImportError as e:\n'
        "    print('VindLU:', e)\n", path)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    lines = fixed.stdout.splitlines()
    assert lines[0].startswith('E3D ') and int(lines[0].split()[1]) > 0
    assert lines[1].startswith(
        "VindLU: mmaction2 1.2.0's multimodal models (VindLU) do not import "
        'with the installed transformers (`from transformers.models.beit '
        'import BeitConfig, BeitModel` fails: ModuleNotFoundError')
    assert 'install "transformers>=4.28,<5"' in lines[1]


def test_probe_of_transformers_imports(tmp_path):
    from e3d_plugin._compat import unresolved_transformers_import
    path = _fake_transformers(tmp_path / 'site', '4.40.0', {
        'activations': 'ACT2FN = {}\n',
        'modeling_utils': 'class PreTrainedModel:\n    pass\n'})
    folder = tmp_path / 'models'
    folder.mkdir()
    (folder / 'a.py').write_text(
        'import os\nimport transformers\n'
        'from transformers.activations import ACT2FN\n'
        'def f():\n    from transformers import missing_inside_a_function\n')
    (folder / 'b.py').write_text(
        'from transformers.modeling_utils import PreTrainedModel\n')
    import sys
    sys.path.insert(0, path)
    try:
        for name in [m for m in sys.modules if m.split('.')[0] ==
                     'transformers']:
            del sys.modules[name]
        assert unresolved_transformers_import(str(folder)) is None
        (folder / 'c.py').write_text(
            'from transformers.modeling_utils import (PreTrainedModel,\n'
            '    apply_chunking_to_forward)\n')
        statement, error = unresolved_transformers_import(str(folder))
        assert statement == ('from transformers.modeling_utils import '
                             'PreTrainedModel, apply_chunking_to_forward')
        assert error.startswith('ImportError: cannot import name '
                                "'apply_chunking_to_forward'")
    finally:
        sys.path.remove(path)
        for name in [m for m in sys.modules if m.split('.')[0] ==
                     'transformers']:
            del sys.modules[name]
