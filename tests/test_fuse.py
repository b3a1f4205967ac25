"""fuse_conv_bn: batch norms folded into the convs before them give the
eval-mode outputs of the model they came from, for E3D (whole clip and
stream) and mmaction2's X3D."""
import copy

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from e3d_plugin.models import E3D, fuse_conv_bn
from tests.helpers import random_weights


def count_norms(model):
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


@pytest.mark.parametrize('arch,clip', [('E3D-XS', (5, 37)),
                                       ('E3D-S', (3, 33))])
def test_fused_e3d_equals_eval_mode(arch, clip):
    torch.manual_seed(0)
    model = random_weights(E3D(arch=arch))
    norms = count_norms(model)
    frames, size = clip
    x = torch.randn(2, 3, frames, size, size)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_conv_bn(copy.deepcopy(model))
        out = fused(x)
    # every norm of E3D sits in a conv-norm-act module
    assert fused.folded_norms == norms > 0
    assert count_norms(fused) == 0
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert all(not p.requires_grad for name, p in fused.named_parameters()
               if name.endswith('conv.bias'))


def test_fused_causal_stream_equals_the_whole_clip():
    torch.manual_seed(1)
    model = random_weights(E3D(arch='E3D-XS', causal=True))
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_conv_bn(copy.deepcopy(model))
        state = fused.init_stream(1)
        outs = []
        for t in range(4):
            out, state = fused.stream_step(x[:, :, t:t + 1], state)
            outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 2), expected, rtol=1e-4,
                               atol=1e-5)


def test_fused_x3d_equals_eval_mode():
    from mmaction.models.backbones import X3D
    torch.manual_seed(2)
    model = random_weights(X3D(gamma_w=1, gamma_b=2.25, gamma_d=2.2))
    x = torch.randn(1, 3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_conv_bn(copy.deepcopy(model))
        out = fused(x)
    assert fused.folded_norms > 0
    assert count_norms(fused) == count_norms(model) - fused.folded_norms
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_training_mode_is_refused_and_others_left_alone():
    model = E3D(arch='E3D-XS').train()
    with pytest.raises(ValueError, match=r'call model.eval\(\) first'):
        fuse_conv_bn(model)
    assert count_norms(model) > 0
    # group norms are no batch norms: nothing to fold
    gn = E3D(arch='E3D-XS', norm_cfg=dict(type='GN', num_groups=4)).eval()
    before = [p.clone() for p in gn.parameters()]
    assert fuse_conv_bn(gn).folded_norms == 0
    assert all(torch.equal(a, b) for a, b in zip(before, gn.parameters()))
