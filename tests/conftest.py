"""Shared fixtures: small structures of every block kind."""
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import e3d_plugin  # noqa: E402,F401  (bridges the stack, registers E3D)


def small_structure(kind, se=0.0, act=None, depth=2):
    """Stem, one block of ``kind`` (strided, widening), one block keeping
    the width (identity shortcuts), final 1x1x1 conv."""
    btn = kind in ('btn', 'dwbtn')
    extra = dict(se=se, act=act) if (se or act) else {}

    def block(cin, cout, k, kt, s, L):
        d = dict(kind=kind, **{'in': cin, 'out': cout}, k=k, kt=kt, s=s, L=L)
        if btn:
            d['btn'] = cout * 2
        d.update(extra)
        return d

    return [
        {'kind': 'conv', 'in': 3, 'out': 8, 'k': 3, 'kt': 1, 's': 2},
        block(8, 16, 3, 3, 2, depth),
        block(16, 16, 5, 1, 2, depth),
        block(16, 24, 3, 3, 1, 1),
        {'kind': 'conv', 'in': 24, 'out': 32, 'k': 1, 'kt': 1, 's': 1},
    ]


@pytest.fixture
def structure_of():
    """Factory of small structures (see :func:`small_structure`)."""
    return small_structure
