"""The proxies a rank study ranks architectures by.

:mod:`e3d_plugin.study.runner` (which computes them) and
:mod:`e3d_plugin.study.report` (which correlates and writes them) both
import :data:`PROXIES` from here.
"""

#: Proxies every architecture is ranked by, in report order.
PROXIES = ('stentr_score', 'stentr_score_norefine', 'flops', 'params',
           'layers', 'random_score')

__all__ = ['PROXIES']
