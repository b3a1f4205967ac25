"""Mixed precision and ``torch.compile`` paths of the E3D backbone, checked
on the CPU: the float32 policy of depthwise convs under bfloat16 autocast,
and ``torch.compile`` (directly and through mmengine's ``compile=True``)
building and training E3D."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from e3d_plugin import E3D
from e3d_plugin.models.depthwise import DepthwiseConv3d, autocast_enabled
from tests.helpers import ROOT, data_options

BF16 = torch.bfloat16


def _depthwise(autocast_fp32, channels=8, seed=0):
    torch.manual_seed(seed)
    conv = DepthwiseConv3d(channels, channels, (3, 3, 3), stride=(1, 2, 2),
                           padding=(1, 1, 1), groups=channels, bias=False,
                           autocast_fp32=autocast_fp32)
    return conv


def test_autocast_enabled_follows_the_context():
    assert not autocast_enabled('cpu')
    with torch.autocast('cpu', dtype=BF16):
        assert autocast_enabled('cpu')
    assert not autocast_enabled('cpu')


def test_fp32_policy_computes_the_conv_in_float32_under_autocast():
    conv = _depthwise(autocast_fp32=True)
    x = torch.randn(2, 8, 5, 9, 7).to(BF16)
    with torch.autocast('cpu', dtype=BF16):
        out = conv(x)
    # the float32 conv of the same input, cast back to the input's dtype
    expected = F.conv3d(x.float(), conv.weight, None, conv.stride,
                        conv.padding, 1, 8).to(BF16)
    assert out.dtype == BF16
    assert torch.equal(out, expected)
    # without the policy autocast runs it in bfloat16: another rounding
    plain = _depthwise(autocast_fp32=False)
    with torch.autocast('cpu', dtype=BF16):
        low = plain(x)
    assert low.dtype == BF16
    assert not torch.equal(low, expected)
    exact = F.conv3d(x.double(), conv.weight.double(), None, conv.stride,
                     conv.padding, 1, 8)
    assert (out.double() - exact).abs().max() <= (
        low.double() - exact).abs().max()


def test_fp32_policy_keeps_a_float32_input_float32():
    conv = _depthwise(autocast_fp32=True)
    x = torch.randn(1, 8, 3, 6, 6)
    with torch.autocast('cpu', dtype=BF16):
        out = conv(x)
    assert out.dtype == torch.float32
    assert torch.equal(out, F.conv3d(x, conv.weight, None, conv.stride,
                                     conv.padding, 1, 8))


def test_fp32_policy_gradients_are_float32_sums():
    conv = _depthwise(autocast_fp32=True)
    x = torch.randn(2, 8, 4, 8, 8).to(BF16).requires_grad_()
    with torch.autocast('cpu', dtype=BF16):
        out = conv(x)
    grad = torch.randn(out.shape).to(BF16)
    out.backward(grad)
    assert conv.weight.grad.dtype == torch.float32
    assert x.grad.dtype == BF16
    # the same sums in float64 from the same bfloat16 values
    xd = x.detach().double().requires_grad_()
    wd = conv.weight.detach().double().requires_grad_()
    F.conv3d(xd, wd, None, conv.stride, conv.padding, 1, 8).backward(
        grad.double())
    torch.testing.assert_close(conv.weight.grad.double(), wd.grad,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), xd.grad.to(BF16).double(),
                               rtol=1e-2, atol=1e-2)


def test_policy_changes_nothing_outside_autocast():
    torch.manual_seed(3)
    plain = E3D(arch='E3D-XS').eval()
    policy = E3D(arch='E3D-XS', depthwise_fp32=True).eval()
    assert list(plain.state_dict()) == list(policy.state_dict())
    policy.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain(x), policy(x))


def _conv_dtypes(model, x):
    """Output dtype of every conv module of ``model`` on ``x`` under
    bfloat16 autocast, split into depthwise and other convs."""
    seen = {'depthwise': set(), 'other': set()}
    hooks = []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv3d):
            kind = ('depthwise' if isinstance(module, DepthwiseConv3d)
                    else 'other')
            hooks.append(module.register_forward_hook(
                lambda m, i, o, kind=kind: seen[kind].add(o.dtype)))
    with torch.autocast('cpu', dtype=BF16):
        out = model(x)
    for hook in hooks:
        hook.remove()
    return seen, out


def test_policy_in_the_backbone_under_cpu_bfloat16():
    torch.manual_seed(0)
    model = E3D(arch='E3D-XS', depthwise_fp32=True)
    depthwise = [m for m in model.modules()
                 if isinstance(m, DepthwiseConv3d)]
    assert depthwise and all(m.autocast_fp32 for m in depthwise)
    x = torch.randn(2, 3, 4, 32, 32)
    seen, out = _conv_dtypes(model, x)
    # every conv hands on bfloat16: the policy is invisible around it
    assert seen == {'depthwise': {BF16}, 'other': {BF16}}
    out.float().mean().backward()
    assert all(m.weight.grad is not None and m.weight.grad.dtype ==
               torch.float32 for m in depthwise)
    # the depthwise convs' own precision: float32, so the output is nearer
    # the float32 network's than without the policy (same weights)
    model.eval()
    plain = E3D(arch='E3D-XS', depthwise_fp32=False).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        exact = model(x)
        with torch.autocast('cpu', dtype=BF16):
            mixed_policy = model(x).float()
            mixed_plain = plain(x).float()
    assert not torch.equal(mixed_policy, mixed_plain)
    for mixed in (mixed_policy, mixed_plain):
        assert (mixed - exact).abs().max() < 0.1 * exact.abs().max()


def test_policy_argument_checks():
    with pytest.raises(TypeError, match='autocast_fp32 must be True or '
                       "False, got 'yes'"):
        DepthwiseConv3d(4, 4, 3, groups=4, autocast_fp32='yes')
    model = E3D(arch='E3D-XS', depthwise_fp32=True, fast_depthwise=False)
    depthwise = [m for m in model.modules()
                 if isinstance(m, DepthwiseConv3d)]
    assert depthwise and all(
        m.autocast_fp32 and not m.fast_backward for m in depthwise)
    x = torch.randn(1, 3, 4, 16, 16, requires_grad=True)
    assert not depthwise[0].fast_path(torch.randn(1, 1, 1, 1, 1,
                                                  requires_grad=True))
    model(x).sum().backward()
    # neither option: plain Conv3d, as before
    neither = E3D(arch='E3D-XS', fast_depthwise=False)
    assert not any(isinstance(m, DepthwiseConv3d) for m in neither.modules())


def _train_step(model, x, call=None):
    model.zero_grad(set_to_none=True)
    out = (model if call is None else call)(x)
    out.float().square().mean().backward()
    return out.detach(), {name: p.grad.clone()
                          for name, p in model.named_parameters()}


def test_torch_compile_trains_a_step_like_eager():
    """``torch.compile`` traces the backbone (the depthwise convs' numba
    backward steps aside while compiling) and gives eager's outputs and
    gradients; aot_eager compiles forward and backward graphs without a
    C++ compiler."""
    torch.manual_seed(1)
    model = E3D(arch='E3D-XS', channels_last=True)
    model.init_weights()
    model.train()
    x = torch.randn(2, 3, 4, 32, 32)
    eager_out, eager_grads = _train_step(model, x)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    out, grads = _train_step(model, x, compiled)
    torch.testing.assert_close(out, eager_out, rtol=1e-4, atol=1e-5)
    assert grads.keys() == eager_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], eager_grads[name],
                                   rtol=1e-3, atol=1e-5, msg=name)


def test_update_params_left_to_eager_pytorch():
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    assert OptimWrapper.update_params.e3d_eager_update
    assert AmpOptimWrapper.update_params is OptimWrapper.update_params
    wrapper = OptimWrapper(torch.optim.SGD([torch.nn.Parameter(
        torch.ones(2))], lr=0.5))
    param = wrapper.optimizer.param_groups[0]['params'][0]
    wrapper.update_params((param * torch.tensor([1.0, 2.0])).sum())
    assert torch.equal(param.detach(), torch.tensor([0.5, 0.0]))


CONFIG = osp.join(ROOT, 'configs', 'e3d', 'e3d_xs_8x4x1_synthetic-motion.py')


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    from e3d_plugin.datasets.synthetic_motion import generate
    out = str(tmp_path_factory.mktemp('compile_data'))
    return generate(out, num_videos=20, size=32, frames=16, seed=3)


def _losses(data, work_dir, compile_cfg):
    """Train losses of 2 iterations of the XS recipe (seed 0, no dropout),
    with mmengine's ``compile`` option set to ``compile_cfg``."""
    from mmengine.runner import Runner

    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(data_options(data, work_dir, epochs=1, batch=8))
    cfg.train_cfg.val_interval = 10
    cfg.randomness = dict(seed=0, deterministic=False)
    cfg.train_dataloader.sampler.shuffle = False
    cfg.default_hooks.checkpoint.interval = 10
    # inductor draws dropout masks from its own generator: without dropout
    # both runs compute the same losses
    cfg.model.cls_head.dropout_ratio = 0.0
    if compile_cfg is not None:
        cfg.compile = compile_cfg
    torch._dynamo.reset()
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner.message_hub.get_scalar('train/loss').data[0]


@pytest.mark.slow
def test_mmengine_compile_trains_the_recipe(tiny_data, tmp_path):
    eager = _losses(tiny_data, str(tmp_path / 'eager'), None)
    compiled = _losses(tiny_data, str(tmp_path / 'compiled'),
                       dict(backend='aot_eager'))
    assert len(eager) == len(compiled) == 2
    assert compiled == pytest.approx(eager, rel=1e-4)


@pytest.mark.slow
def test_mmengine_compile_true_with_inductor(tiny_data, tmp_path):
    eager = _losses(tiny_data, str(tmp_path / 'eager'), None)
    compiled = _losses(tiny_data, str(tmp_path / 'compiled'), True)
    assert len(compiled) == 2
    assert compiled == pytest.approx(eager, rel=1e-3)
