"""Preset structures shipped as package data.

``E3D-S``, ``E3D-M`` and ``E3D-L`` are the published structures (TinyNAS text
files), searched at the X3D-S / M / L budgets (13x160x160, 16x224x224 and
16x312x312 clips). ``E3D-XS`` is this project's small E3D-style network for
CPU training on the built-in synthetic dataset (8x64x64 clips).

This package is data only: it names the files and imports nothing from the
rest of the plugin. :func:`e3d_plugin.structure.get_preset` (also
``e3d_plugin.get_preset``) and :func:`~e3d_plugin.structure.load_structure`
read them.
"""
import os.path as osp

#: Preset name -> its file in this folder.
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

#: The folder holding the preset files.
PRESET_DIR = osp.dirname(osp.abspath(__file__))


def preset_path(name):
    """Path of the file holding preset ``name``."""
    return osp.join(PRESET_DIR, PRESETS[name])


__all__ = ['PRESETS', 'PRESET_CLIPS', 'PRESET_DIR', 'preset_path']
