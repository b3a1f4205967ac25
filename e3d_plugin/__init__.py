"""E3D: spatio-temporal entropy search of efficient 3D CNNs, as a plugin for
mmengine and mmaction2.

Importing the package bridges the gaps of the published mmaction2 1.2.0 wheel
(see :mod:`e3d_plugin._compat`) and registers everything: the ``E3D``
backbone in mmaction2's ``MODELS``, and the search components in the
plugin's registries. Use it from a config with::

    custom_imports = dict(imports=['e3d_plugin'], allow_failed_imports=False)
"""
from . import _compat

_compat.apply()

from .cost import Cost, analyze_cost, compute_cost  # noqa: E402
from .traffic import module_traffic, structure_traffic  # noqa: E402,F401
from .structure import PRESETS, get_preset  # noqa: E402
from .structure import (Block, Structure, StructureError,  # noqa: E402
                        load_structure, save_structure)
from .version import __version__  # noqa: E402
from . import hooks, models  # noqa: E402,F401
from .models import E3D  # noqa: E402

__all__ = [
    '__version__', 'Block', 'Structure', 'StructureError', 'load_structure',
    'save_structure', 'PRESETS', 'get_preset', 'Cost', 'compute_cost',
    'analyze_cost', 'E3D'
]
