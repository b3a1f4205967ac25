"""DepthwiseConv3d: the numba backward of depthwise 3D convs gives
PyTorch's gradients, is used only where it applies, and E3D builds it."""
import pytest
import torch
import torch.nn as nn

from e3d_plugin.models import E3D
from e3d_plugin.models.depthwise import DepthwiseConv3d, numba_available

CL = torch.channels_last_3d

pytestmark = pytest.mark.skipif(not numba_available(),
                                reason='numba is in the tests extra')


def pair(channels, kernel, stride, padding):
    fast = DepthwiseConv3d(channels, channels, kernel, stride, padding,
                           groups=channels, bias=False)
    plain = nn.Conv3d(channels, channels, kernel, stride, padding,
                      groups=channels, bias=False)
    plain.weight.data.copy_(fast.weight.data)
    return fast, plain


@pytest.mark.parametrize('shape,kernel,stride,padding', [
    ((2, 6, 5, 7, 9), (3, 3, 3), (1, 2, 2), (1, 1, 1)),
    ((3, 4, 3, 5, 5), (1, 5, 5), (1, 1, 1), (0, 2, 2)),
    ((1, 3, 4, 6, 6), (5, 3, 3), (1, 2, 2), (2, 1, 1)),
    ((2, 5, 6, 3, 4), (3, 3, 3), (1, 1, 1), (2, 1, 1)),   # causal-like pad
    ((2, 8, 4, 7, 7), (3, 1, 1), (2, 1, 1), (1, 0, 0)),   # time stride
    ((1, 2, 1, 1, 1), (3, 3, 3), (1, 1, 1), (1, 1, 1)),   # one pixel
])
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
def test_gradients_equal_pytorch(shape, kernel, stride, padding, layout):
    torch.manual_seed(0)
    fast, plain = pair(shape[1], kernel, stride, padding)
    x = torch.randn(shape)
    if layout == 'channels_last':
        x = x.contiguous(memory_format=CL)
        fast.to(memory_format=CL)
        plain.to(memory_format=CL)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    assert fast.fast_path(x1)
    y1, y2 = fast(x1), plain(x2)
    assert torch.equal(y1, y2)
    grad = torch.randn_like(y1)
    y1.backward(grad)
    y2.backward(grad)
    assert x1.grad.shape == x2.grad.shape
    if layout == 'contiguous':
        assert x1.grad.is_contiguous()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad,
                               rtol=1e-4, atol=1e-5)


def test_gradients_against_float64_reference():
    """The float32 sums are as close to the exact gradients as PyTorch's."""
    torch.manual_seed(1)
    fast, plain = pair(16, (3, 3, 3), (1, 2, 2), (1, 1, 1))
    x = torch.randn(4, 16, 8, 20, 20).contiguous(memory_format=CL)
    grad = torch.randn(4, 16, 8, 10, 10)
    exact = nn.Conv3d(16, 16, 3, (1, 2, 2), 1, groups=16,
                      bias=False).double()
    exact.weight.data.copy_(plain.weight.data.double())
    errors = {}
    for name, conv, dtype in (('fast', fast, torch.float32),
                              ('torch', plain, torch.float32),
                              ('exact', exact, torch.float64)):
        conv.zero_grad()
        xi = x.to(dtype).clone().requires_grad_()
        conv(xi).backward(grad.to(dtype))
        errors[name] = (xi.grad.double(), conv.weight.grad.double())
    for index in (0, 1):
        ours = (errors['fast'][index] - errors['exact'][index]).abs().max()
        theirs = (errors['torch'][index] - errors['exact'][index]).abs().max()
        assert ours <= 4 * theirs + 1e-12


def test_fast_path_only_where_it_applies():
    fast, _ = pair(4, 3, 1, 1)
    x = torch.randn(1, 4, 3, 5, 5, requires_grad=True)
    assert fast.fast_path(x)
    assert fast.fast_path(x.detach())  # the weight's gradient
    fast.weight.requires_grad_(False)
    assert not fast.fast_path(x.detach())  # no gradient to compute
    fast.weight.requires_grad_(True)
    assert not fast.fast_path(x.double())
    with torch.no_grad():
        assert not fast.fast_path(x)
    grouped = DepthwiseConv3d(4, 4, 3, 1, 1, groups=2, bias=False)
    assert not grouped.fast_path(x)  # not depthwise
    biased = DepthwiseConv3d(4, 4, 3, 1, 1, groups=4, bias=True)
    assert not biased.fast_path(x)
    dilated = DepthwiseConv3d(4, 4, 3, 1, 2, dilation=2, groups=4,
                              bias=False)
    assert not dilated.fast_path(x)
    # where it does not apply it is nn.Conv3d
    y = grouped(x)
    assert y.grad_fn.name() == 'ConvolutionBackward0'
    assert fast(x).grad_fn.name().startswith('_DepthwiseConv3dFunction')


def test_e3d_builds_it_for_dwbtn_units_only():
    torch.manual_seed(0)
    fast = E3D(arch='E3D-XS')
    kinds = [type(m) for m in fast.modules()
             if isinstance(m, nn.Conv3d) and m.groups > 1]
    assert kinds and all(k is DepthwiseConv3d for k in kinds)
    assert not any(isinstance(m, DepthwiseConv3d) for m in fast.modules()
                   if isinstance(m, nn.Conv3d) and m.groups == 1)
    torch.manual_seed(0)
    plain = E3D(arch='E3D-XS', fast_depthwise=False)
    assert not any(isinstance(m, DepthwiseConv3d) for m in plain.modules())
    # same parameters and state-dict keys, the same initial weights
    assert list(fast.state_dict()) == list(plain.state_dict())
    for (name, a), b in zip(fast.state_dict().items(),
                            plain.state_dict().values()):
        assert torch.equal(a, b), name
    # and the same training step, up to float32 rounding
    x = torch.randn(2, 3, 8, 32, 32)
    for model in (fast, plain):
        model.train()
        model(x).mean().backward()
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6,
                                   msg=name)


def test_e3d_fast_depthwise_must_be_a_bool():
    with pytest.raises(TypeError, match='fast_depthwise must be True or '
                       'False'):
        E3D(arch='E3D-XS', fast_depthwise='yes')


def test_onnx_export_sees_plain_conv(tmp_path):
    onnx = pytest.importorskip('onnx')
    fast, plain = pair(4, 3, (1, 2, 2), 1)
    path = tmp_path / 'dw.onnx'
    torch.onnx.export(fast.eval(), torch.randn(1, 4, 3, 6, 6), str(path),
                      dynamo=False)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops == ['Conv']
