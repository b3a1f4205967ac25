"""Latency of a structure, predicted from a per-unit lookup table.

Three parts:

* :mod:`.keys` -- :class:`UnitKey`, the shape of one timed unit, and the
  keys of a block or structure (from :func:`e3d_plugin.units.iter_units`);
* :mod:`.table` -- :class:`LatencyTable`, timed on the device and kept on
  disk, and :func:`build_latency_predictor`;
* :mod:`.timing` -- the timer (:func:`time_module`, :func:`time_network`)
  and the settings a table is valid for (:func:`device_settings`,
  :func:`allocator_settings`).

Everything is importable from here, as before the split.
"""
from .keys import UnitKey, block_units, structure_units
from .table import (TABLE_FORMAT, TABLE_VERSION, LatencyTable,
                    build_latency_predictor)
from .timing import (ALLOCATOR_VARIABLES, LatencyError, allocator_settings,
                     device_settings, time_module, time_network)

__all__ = ['LatencyTable', 'LatencyError', 'UnitKey', 'block_units',
           'structure_units', 'time_module', 'time_network',
           'device_settings', 'allocator_settings', 'build_latency_predictor',
           'TABLE_FORMAT', 'TABLE_VERSION', 'ALLOCATOR_VARIABLES']
