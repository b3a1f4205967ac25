"""Registries of the plugin, children of mmengine's root registries.

Each has the scope ``e3d_plugin``; a parent holds one child per scope, so the
first two hang under two roots, chosen by role (as mmrazor does for its
mutators):

* ``SCORES`` (``STEntrScore``, ``RandomScore`` and the proxy zoo of
  :mod:`e3d_plugin.nas.zoo`) under ``TASK_UTILS``;
* ``SEARCH_SPACES`` (``E3DSearchSpace``) under ``MODELS``;
* ``SEARCHERS`` (``EntropyEvolution``) stands alone: a searcher is no
  mmengine loop (it is not built by a ``Runner`` and has no ``runner``
  argument), so it does not belong under ``LOOPS``;
* ``LATENCY_PREDICTORS`` (``LatencyTable``) stands alone: mmengine has no
  root for it, and ``TASK_UTILS`` already holds the plugin's child.

So ``TASK_UTILS.build(dict(type='e3d_plugin.STEntrScore'))`` works as well as
``SCORES.build(dict(type='STEntrScore'))``. The backbone is registered in
mmaction2's own ``MODELS`` instead, where mmaction2 configs look for it.
"""
from mmengine.registry import MODELS, TASK_UTILS, Registry

#: Training-free architecture scores.
SCORES = Registry(
    'score', parent=TASK_UTILS, scope='e3d_plugin',
    locations=['e3d_plugin.nas'])
#: Search spaces.
SEARCH_SPACES = Registry(
    'search space', parent=MODELS, scope='e3d_plugin',
    locations=['e3d_plugin.nas'])
#: Searchers.
SEARCHERS = Registry(
    'searcher', scope='e3d_plugin',
    locations=['e3d_plugin.nas'])

#: Latency predictors of the search's ``latency`` budget.
LATENCY_PREDICTORS = Registry(
    'latency predictor', scope='e3d_plugin',
    locations=['e3d_plugin.nas'])


class UnknownTypeError(ValueError):
    """A config names a ``type`` that its registry does not hold."""


def build(registry, cfg, **default_args):
    """Build ``cfg`` from one of the plugin's registries.

    The plugin's scope is made the default while building, so that a
    ``type`` of the plugin is found whatever scope (e.g. ``mmaction``) the
    caller has set. An unknown ``type`` raises :class:`UnknownTypeError`
    listing the registered names.
    """
    from mmengine.registry import DefaultScope
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise UnknownTypeError(
            f"a {registry.name} config needs a 'type' (one of "
            f"{', '.join(sorted(registry.module_dict))}), got {cfg!r}")
    with DefaultScope.overwrite_default_scope('e3d_plugin'):
        kind = cfg['type']
        if isinstance(kind, str) and registry.get(kind) is None:
            raise UnknownTypeError(
                f"unknown {registry.name} type '{kind}'; registered: "
                f"{', '.join(sorted(registry.module_dict))}")
        return registry.build(cfg, default_args=default_args or None)
