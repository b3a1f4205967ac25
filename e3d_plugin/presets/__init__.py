"""Preset structures shipped as package data.

``E3D-S``, ``E3D-M`` and ``E3D-L`` are the published structures (TinyNAS text
files), searched at the X3D-S / M / L budgets (13x160x160, 16x224x224 and
16x312x312 clips). ``E3D-XS`` is this project's small E3D-style network for
CPU training on the built-in synthetic dataset (8x64x64 clips).
"""
import functools
import os.path as osp

PRESETS = {
    'E3D-S': 'E3D_S.txt',
    'E3D-M': 'E3D_M.txt',
    'E3D-L': 'E3D_L.txt',
    'E3D-XS': 'E3D_XS.json',
}

#: Clip size each preset was searched for: (frames, image size).
PRESET_CLIPS = {
    'E3D-S': (13, 160),
    'E3D-M': (16, 224),
    'E3D-L': (16, 312),
    'E3D-XS': (8, 64),
}


def preset_path(name):
    """Path of the file holding preset ``name``."""
    return osp.join(osp.dirname(__file__), PRESETS[name])


@functools.lru_cache(maxsize=None)
def get_preset(name):
    """Return the :class:`~e3d_plugin.structure.Structure` of a preset."""
    from ..structure import StructureError, load_structure
    if name not in PRESETS:
        raise StructureError(
            f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return load_structure(preset_path(name))
