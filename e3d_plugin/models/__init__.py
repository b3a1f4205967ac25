"""``nn.Module``s built from structures; importing registers ``E3D``."""
from .blocks import ConvUnit, ResidualUnit, SqueezeExcitation, build_units
from .e3d import E3D

__all__ = ['E3D', 'ConvUnit', 'ResidualUnit', 'SqueezeExcitation',
           'build_units']
