"""The proxies a rank study ranks architectures by.

:mod:`e3d_plugin.study.runner` (which computes them) and
:mod:`e3d_plugin.study.report` (which correlates and writes them) both
import them from here.

Every study computes :data:`PROXIES` (they cost microseconds a structure).
The network-based proxies of the zoo (:data:`NETWORK_PROXIES`, see
:mod:`e3d_plugin.nas.zoo`) build and run every network, about a tenth of a
second each on a CPU core at 8x40x40; a study computes them when asked
(``--proxies``), and a finished study computes those its plan lacks for its
planned architectures without training anything again.
"""

from ..structure import Structure
from ..units import temporal_receptive_field

#: Proxies every architecture is ranked by, in report order.
PROXIES = ('stentr_score', 'stentr_score_norefine', 'flops', 'params',
           'layers', 'random_score')

#: Network-based proxies, computed when asked: name -> score type.
NETWORK_PROXIES = {
    'zen_score': 'ZenScore',
    'naswot': 'NASWOTScore',
    'synflow': 'SynFlowScore',
    'grad_norm': 'GradNormScore',
    'zico': 'ZiCoScore',
}

#: Proxies derived from the plan's own values, computed when asked:
#: ``stentr_score_coverage`` is STEntr-Score with ``temporal_coverage=True``
#: (the plan's ``stentr_score`` times ``min(R, T) / T``, R the structure's
#: temporal receptive field, T the plan's frames).
DERIVED_PROXIES = ('stentr_score_coverage', )

#: Every proxy a study knows, in report order.
KNOWN_PROXIES = PROXIES + DERIVED_PROXIES + tuple(NETWORK_PROXIES)


def derived_proxy(name, arch, plan):
    """The value of the derived proxy ``name`` for a plan architecture."""
    if name != 'stentr_score_coverage':
        raise KeyError(name)
    frames = int(plan['frames'])
    field = temporal_receptive_field(Structure.from_dicts(arch['structure']))
    return arch['proxies']['stentr_score'] * min(field, frames) / frames


def plan_proxies(plan):
    """The known proxies every architecture of ``plan`` has, in report
    order."""
    archs = plan['archs']
    return [name for name in KNOWN_PROXIES
            if archs and all(name in arch['proxies'] for arch in archs)]


__all__ = ['PROXIES', 'NETWORK_PROXIES', 'DERIVED_PROXIES', 'KNOWN_PROXIES',
           'derived_proxy', 'plan_proxies']
