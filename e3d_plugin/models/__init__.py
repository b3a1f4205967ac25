"""``nn.Module``s built from structures; importing registers ``E3D`` and
``StreamingRecognizer3D``."""
from .blocks import (CausalConvModule, ConvUnit, ResidualUnit,
                     SqueezeExcitation, StreamCache, build_units)
from .e3d import E3D, check_arguments
from .fuse import fuse_conv_bn
from .recognizer import StreamingRecognizer3D, as_streaming
from .stream_graph import StaticStream

__all__ = [
    'E3D', 'ConvUnit', 'ResidualUnit', 'SqueezeExcitation', 'build_units',
    'CausalConvModule', 'StreamCache', 'StreamingRecognizer3D',
    'as_streaming', 'check_arguments', 'StaticStream', 'fuse_conv_bn'
]
