"""Bridges of e3d_plugin._compat that are not covered elsewhere."""
from mmengine.config import Config

from e3d_plugin.models import E3D

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
