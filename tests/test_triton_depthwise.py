"""The Triton depthwise 3D conv (e3d_plugin.models.triton_depthwise), run
on CPU tensors by Triton's interpreter: its forward, input gradient and
weight gradient against PyTorch's (float64 references), in float32,
float16, bfloat16 and float64 (gradcheck); the kernels compiled for sm_90
without a GPU; ``DepthwiseConv3d(triton=True)`` and
``E3D(depthwise_triton=True)``, which change nothing on CPU.

triton is in the tests extra wherever it has wheels (Linux x86_64 / aarch64,
Python >= 3.10): there, a missing triton fails this module loudly.
"""
import os
import platform
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

TRITON_EXPECTED = (sys.platform.startswith('linux')
                   and platform.machine() in ('x86_64', 'aarch64')
                   and sys.version_info >= (3, 10))
try:
    import triton  # noqa: F401
except ImportError:  # pragma: no cover - exercised where triton is absent
    if TRITON_EXPECTED:
        raise ImportError(
            'triton is not installed, but the tests extra installs it on '
            'this platform: pip install -e ".[tests]" (or '
            'pip install triton==3.6.0)') from None
    pytest.skip('triton has no wheel for this platform / Python (the tests '
                'extra installs it on Linux x86_64 / aarch64, Python >= '
                '3.10)', allow_module_level=True)

from e3d_plugin.models import E3D  # noqa: E402
from e3d_plugin.models import triton_depthwise as td  # noqa: E402
from e3d_plugin.models.depthwise import DepthwiseConv3d  # noqa: E402
from e3d_plugin.models.triton_depthwise import (  # noqa: E402
    depthwise_conv3d_triton, triton_available)

F16, BF16, F64 = torch.float16, torch.bfloat16, torch.float64


@pytest.fixture(autouse=True)
def interpreter_off(monkeypatch):
    """Each test switches the interpreter on itself where it wants the
    Triton path of modules (direct calls on CPU tensors always interpret).
    ``TRITON_INTERPRET`` is left as it is: triton breaks when it changes
    after triton was imported under it."""
    monkeypatch.setattr(td, 'INTERPRET', False)


def reference(x, weight, stride, padding, grad):
    """Output, input gradient and weight gradient of the depthwise conv in
    float64 (``F.conv3d`` and ``aten.convolution_backward``)."""
    x, weight, grad = x.double(), weight.double(), grad.double()
    out = F.conv3d(x, weight, None, stride, padding, 1, x.shape[1])
    grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
        grad, x, weight, None, list(stride), list(padding), [1, 1, 1], False,
        [0, 0, 0], x.shape[1], [True, True, False])
    return out, grad_x, grad_w


def run(x, weight, stride, padding, grad=None, seed=0):
    """Output and both gradients of :func:`depthwise_conv3d_triton`, and
    the output gradient used (random unless given)."""
    x = x.detach().requires_grad_()
    weight = weight.detach().requires_grad_()
    out = depthwise_conv3d_triton(x, weight, stride, padding)
    if grad is None:
        generator = torch.Generator().manual_seed(seed)
        grad = torch.randn(out.shape, generator=generator).to(out.dtype)
    grad_x, grad_w = torch.autograd.grad(out, (x, weight), grad)
    return out, grad_x, grad_w, grad


def inputs(shape, kernel, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator)
    weight = torch.randn((shape[1], 1) + kernel, generator=generator)
    return x.to(dtype), weight.to(dtype)


def assert_near(actual, expected, rtol, scale_atol):
    """``actual`` within ``rtol`` of ``expected`` (float64), with an
    absolute floor of ``scale_atol`` times its largest magnitude."""
    expected = expected.double()
    atol = scale_atol * float(expected.abs().max())
    torch.testing.assert_close(actual.double(), expected, rtol=rtol,
                               atol=atol)


# (N, C, T, H, W), kernel (kt, k, k), stride, padding: the E3D family (kt
# 1/3/5, k 3/5, spatial stride 1/2, padding kt//2 or 0 (causal), k//2) on
# odd and even sizes, T=1, one channel and several, batch 1 and 2.
CASES = [
    ((2, 3, 5, 7, 9), (3, 3, 3), (1, 2, 2), (1, 1, 1)),
    ((1, 1, 1, 5, 5), (1, 5, 5), (1, 1, 1), (0, 2, 2)),
    ((1, 2, 4, 6, 6), (5, 3, 3), (1, 2, 2), (2, 1, 1)),
    ((2, 2, 3, 9, 7), (3, 5, 5), (1, 2, 2), (1, 2, 2)),
    ((1, 3, 6, 5, 4), (3, 3, 3), (1, 1, 1), (0, 1, 1)),   # causal: no pt
    ((1, 2, 1, 3, 3), (5, 5, 5), (1, 1, 1), (2, 2, 2)),   # kernel > input
    ((2, 1, 3, 8, 11), (1, 3, 3), (1, 2, 2), (0, 1, 1)),
    ((1, 2, 3, 9, 9), (5, 5, 5), (1, 2, 2), (2, 2, 2)),
]
IDS = ['x'.join(map(str, c[0])) + f'-k{c[1][0]}{c[1][1]}-s{c[2][1]}'
       for c in CASES]


@pytest.mark.parametrize('shape,kernel,stride,padding', CASES, ids=IDS)
def test_float32_matches_pytorch(shape, kernel, stride, padding):
    x, weight = inputs(shape, kernel)
    out, grad_x, grad_w, grad = run(x, weight, stride, padding)
    assert out.dtype == grad_x.dtype == grad_w.dtype == torch.float32
    assert grad_x.is_contiguous() and grad_x.shape == x.shape
    expected = reference(x, weight, stride, padding, grad)
    # PyTorch's own float32 conv, to the same tolerance as ours
    assert torch.allclose(out, F.conv3d(x, weight, None, stride, padding, 1,
                                        shape[1]), rtol=1e-5, atol=1e-5)
    for actual, exact in zip((out, grad_x, grad_w), expected):
        assert actual.shape == exact.shape
        assert_near(actual, exact, 1e-5, 1e-6)


def check_small_tiles(monkeypatch, tile, width, shape, kernel, stride,
                      padding, every_axis=True):
    monkeypatch.setattr(td, 'TILE', tile)
    monkeypatch.setattr(td, 'TILE_WIDTH', width)
    x, weight = inputs(shape, kernel, seed=1)
    out_size = td._output_size(shape, kernel, stride, padding)
    # several tiles along each axis of the output, some of them partial
    counts = td._tile(*out_size, tile)[1]
    assert all(n > 1 for n in counts) if every_axis else max(counts) > 1
    out, grad_x, grad_w, grad = run(x, weight, stride, padding, seed=1)
    for actual, exact in zip((out, grad_x, grad_w),
                             reference(x, weight, stride, padding, grad)):
        assert_near(actual, exact, 1e-5, 1e-6)


@pytest.mark.parametrize('shape,kernel,stride,padding', [
    ((1, 1, 3, 5, 6), (3, 3, 3), (1, 2, 2), (1, 1, 1)),
    ((1, 1, 4, 5, 6), (1, 3, 3), (1, 1, 1), (0, 1, 1)),
], ids=['k33-s2', 'k13-s1'])
def test_many_small_tiles(monkeypatch, shape, kernel, stride, padding):
    """Tiles of a few positions: every tile edge, and a weight gradient
    summed over many partial sums."""
    check_small_tiles(monkeypatch, 8 if stride[1] == 1 else 4,
                      4 if stride[1] == 1 else 2, shape, kernel, stride,
                      padding)


@pytest.mark.slow
@pytest.mark.parametrize('case', [0, 3, 4], ids=[IDS[0], IDS[3], IDS[4]])
def test_many_small_tiles_bigger(monkeypatch, case):
    check_small_tiles(monkeypatch, 16, 4, *CASES[case], every_axis=False)


@pytest.mark.parametrize('dtype', [F16, BF16], ids=['float16', 'bfloat16'])
@pytest.mark.parametrize('case', [0, 3, 7], ids=[IDS[0], IDS[3], IDS[7]])
def test_half_precision_is_float32_sums_rounded_once(dtype, case):
    """float16 / bfloat16 in and out, summed in float32: each result is the
    exact (float64) sum of the same half-precision values to within the
    half-precision rounding of the result itself (a half-precision
    accumulator would drift by several units in the last place)."""
    shape, kernel, stride, padding = CASES[case]
    x, weight = inputs(shape, kernel, dtype, seed=2)
    out, grad_x, grad_w, grad = run(x, weight, stride, padding, seed=2)
    assert out.dtype == grad_x.dtype == grad_w.dtype == dtype
    eps = torch.finfo(dtype).eps
    for actual, exact in zip((out, grad_x, grad_w),
                             reference(x, weight, stride, padding, grad)):
        assert_near(actual, exact, eps, 1e-5)
        # and not exact: the values were rounded to the half type
        assert not torch.equal(actual.double(), exact)


def test_float64_gradcheck():
    """First-order gradients of the autograd function, numerically
    (float64 kernels, summed in float64)."""
    generator = torch.Generator().manual_seed(3)
    for shape, kernel, stride, padding in [
            ((1, 1, 2, 3, 3), (3, 3, 3), (1, 1, 1), (1, 1, 1)),
            ((1, 2, 2, 4, 5), (1, 3, 3), (1, 2, 2), (0, 1, 1))]:
        x = torch.randn(shape, generator=generator, dtype=F64,
                        requires_grad=True)
        weight = torch.randn((shape[1], 1) + kernel, generator=generator,
                             dtype=F64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda a, b: depthwise_conv3d_triton(a, b, stride, padding),
            (x, weight), fast_mode=True)


def test_one_gradient_at_a_time_and_layouts():
    shape, kernel, stride, padding = CASES[0]
    x, weight = inputs(shape, kernel, seed=4)
    grad = torch.randn(2, 3, 5, 4, 5)
    _, grad_x, grad_w = reference(x, weight, stride, padding, grad)
    # the weight only (a frozen input)
    w = weight.clone().requires_grad_()
    depthwise_conv3d_triton(x, w, stride, padding).backward(grad)
    assert_near(w.grad, grad_w, 1e-5, 1e-6)
    # the input only (a frozen weight), from a channels-last input: the
    # kernels see a contiguous copy, the values are the same
    xc = x.contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    out = depthwise_conv3d_triton(xc, weight, stride, padding)
    out.backward(grad)
    assert_near(xc.grad, grad_x, 1e-5, 1e-6)
    assert torch.equal(out, depthwise_conv3d_triton(x, weight, stride,
                                                    padding))


def test_argument_errors():
    x, weight = inputs((1, 2, 3, 5, 5), (3, 3, 3))
    with pytest.raises(ValueError, match=r'stride must be \(1, sh, sw\)'):
        depthwise_conv3d_triton(x, weight, (2, 1, 1), 1)
    with pytest.raises(TypeError, match='share a dtype'):
        depthwise_conv3d_triton(x, weight.double(), 1, 1)
    with pytest.raises(TypeError, match='share a dtype'):
        depthwise_conv3d_triton(x.long(), weight.long(), 1, 1)
    with pytest.raises(ValueError, match=r'weight \(C, 1, kt, kh, kw\)'):
        depthwise_conv3d_triton(x, weight[:1], 1, 1)
    with pytest.raises(ValueError, match='smaller than the padded kernel'):
        depthwise_conv3d_triton(x, torch.zeros(2, 1, 5, 3, 3), 1, 0)
    with pytest.raises(TypeError, match='padding must be an int or 3 ints'):
        depthwise_conv3d_triton(x, weight, 1, (1, 1))


def test_availability(monkeypatch):
    x = torch.zeros(1)
    env = os.environ.get('TRITON_INTERPRET')
    assert triton_available(x) == (env == '1')  # a CPU tensor
    with td.interpret():
        assert td.interpreting() and triton_available(x)
    assert td.interpreting() == (env == '1')
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    assert triton_available(x) and td.interpreting()
    if not torch.cuda.is_available():
        assert triton_available()


def test_importing_without_triton(tmp_path):
    """With triton unimportable, the plugin imports, the module says it is
    unavailable and the function raises a clear ImportError."""
    blocker = tmp_path / 'triton.py'
    blocker.write_text('raise ImportError("no triton here")\n')
    code = (
        'import torch\n'
        'import e3d_plugin\n'
        'from e3d_plugin.models import E3D\n'
        'from e3d_plugin.models import triton_depthwise as td\n'
        'assert td.triton is None and not td.triton_available()\n'
        'try:\n'
        '    td.depthwise_conv3d_triton(torch.zeros(1, 1, 1, 3, 3),\n'
        '                               torch.zeros(1, 1, 1, 3, 3))\n'
        'except ImportError as e:\n'
        '    print("ImportError:", e)\n'
        'm = E3D(arch="E3D-XS", depthwise_triton=True)\n'
        'print(m(torch.zeros(1, 3, 2, 16, 16)).shape)\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), os.path.dirname(os.path.dirname(__file__))]))
    result = subprocess.run([sys.executable, '-c', code], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'ImportError: depthwise_conv3d_triton needs triton' in (
        result.stdout)


def _pair(channels, kernel, stride, padding, **kwargs):
    conv = DepthwiseConv3d(channels, channels, kernel, stride, padding,
                           groups=channels, bias=False, triton=True,
                           **kwargs)
    plain = nn.Conv3d(channels, channels, kernel, stride, padding,
                      groups=channels, bias=False)
    plain.load_state_dict(conv.state_dict())
    return conv, plain


def test_module_takes_triton_only_where_asked():
    torch.manual_seed(5)
    conv, plain = _pair(3, (3, 3, 3), (1, 2, 2), (1, 1, 1))
    assert list(conv.state_dict()) == list(plain.state_dict())
    x = torch.randn(1, 3, 3, 7, 7, requires_grad=True)
    # a CPU run never takes it
    assert not conv.triton_path(x)
    with td.interpret():
        assert conv.triton_path(x)
        assert not conv.triton_path(x.double())
        assert not conv.triton_path(
            x.contiguous(memory_format=torch.channels_last_3d))
        off = DepthwiseConv3d(3, 3, 3, 1, 1, groups=3, bias=False)
        assert not off.triton and not off.triton_path(x)
        strided = DepthwiseConv3d(3, 3, 3, 2, 1, groups=3, bias=False,
                                  triton=True)
        assert not strided.triton_path(x)  # temporal stride 2
        grouped = DepthwiseConv3d(4, 4, 3, 1, 1, groups=2, bias=False,
                                  triton=True)
        assert not grouped.triton_path(torch.zeros(1, 4, 3, 5, 5))
        with _tracing():
            assert not conv.triton_path(x)
        out = conv(x)
        assert 'Triton' in type(out.grad_fn).__name__
    grad = torch.randn_like(out)
    out.backward(grad)
    x2 = x.detach().clone().requires_grad_()
    expected = plain(x2)
    expected.backward(grad)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, plain.weight.grad,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="triton must be True or False, got "
                       "'yes'"):
        DepthwiseConv3d(4, 4, 3, groups=4, triton='yes')


class _tracing:
    """Make ``torch.jit.is_tracing()`` say True (a stand-in for a trace)."""

    def __enter__(self):
        self.saved = torch.jit.is_tracing
        torch.jit.is_tracing = lambda: True

    def __exit__(self, *exc):
        torch.jit.is_tracing = self.saved


def test_module_under_autocast():
    """Autocast runs the Triton conv in its dtype, as nn.Conv3d's conv
    would; with ``autocast_fp32`` in float32, handing on the input dtype."""
    torch.manual_seed(6)
    conv, plain = _pair(2, (3, 3, 3), (1, 1, 1), (1, 1, 1))
    x = torch.randn(1, 2, 3, 5, 5)
    with td.interpret(), torch.autocast('cpu', dtype=BF16):
        out = conv(x)
        expected = plain(x)
    assert out.dtype == expected.dtype == BF16
    torch.testing.assert_close(out.float(), expected.float(), rtol=1e-2,
                               atol=1e-2)
    policy, _ = _pair(2, (3, 3, 3), (1, 1, 1), (1, 1, 1), autocast_fp32=True)
    policy.load_state_dict(conv.state_dict())
    xb = x.to(BF16)
    with td.interpret(), torch.autocast('cpu', dtype=BF16):
        out = policy(xb)
    assert out.dtype == BF16
    # the float32 kernels on the float32 input, then rounded
    fp32 = depthwise_conv3d_triton(xb.float(), policy.weight.detach(), 1, 1)
    assert torch.equal(out, fp32.to(BF16))
    torch.testing.assert_close(out.float(), plain(xb.float()), rtol=8e-3,
                               atol=1e-3)


def test_e3d_on_cpu_is_unchanged():
    """``depthwise_triton`` acts only on CUDA: on CPU the backbone gives
    the same outputs and gradients, bit for bit, and the same state dict;
    without it nothing is built with the option."""
    torch.manual_seed(7)
    plain = E3D(arch='E3D-XS', depthwise_triton=False)
    model = E3D(arch='E3D-XS', depthwise_triton=True)
    assert list(plain.state_dict()) == list(model.state_dict())
    model.load_state_dict(plain.state_dict())
    depthwise = [m for m in model.modules() if isinstance(m, DepthwiseConv3d)]
    assert depthwise and all(m.triton for m in depthwise)
    assert not any(m.triton for m in plain.modules()
                   if isinstance(m, DepthwiseConv3d))
    x = torch.randn(2, 3, 4, 32, 32)
    outs, grads = [], []
    for net in (plain, model):
        xi = x.clone().requires_grad_()
        out = net(xi)
        out.square().mean().backward()
        outs.append(out)
        grads.append([xi.grad] + [p.grad for p in net.parameters()])
    assert torch.equal(outs[0], outs[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_e3d_argument_check():
    with pytest.raises(TypeError) as info:
        E3D(arch='E3D-XS', depthwise_triton='yes')
    assert str(info.value) == (
        "depthwise_triton must be True or False, got 'yes'")


TINY = [
    {'kind': 'conv', 'in': 3, 'out': 4, 'k': 3, 'kt': 1, 's': 2},
    {'kind': 'dwbtn', 'in': 4, 'out': 4, 'k': 3, 'kt': 3, 's': 2, 'L': 1,
     'btn': 3},
    {'kind': 'dwbtn', 'in': 4, 'out': 6, 'k': 5, 'kt': 1, 's': 1, 'L': 1,
     'btn': 2},
    {'kind': 'conv', 'in': 6, 'out': 8, 'k': 1, 'kt': 1, 's': 1},
]


def test_e3d_through_the_kernels():
    """With the interpreter on, a small E3D takes the Triton path in its
    depthwise convs and trains like the plain one (float32 rounding)."""
    torch.manual_seed(8)
    plain = E3D(structure=TINY)
    model = E3D(structure=TINY, depthwise_triton=True)
    model.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 3, 16, 16)
    taken = []
    for m in model.modules():
        if isinstance(m, DepthwiseConv3d):
            m.register_forward_hook(
                lambda m, i, o: taken.append(m.triton_path(i[0])))
    results = []
    for net, interpreted in ((plain, False), (model, True)):
        with td.interpret(interpreted):
            out = net(x)
            out.square().mean().backward()
        results.append((out, {n: p.grad for n, p in net.named_parameters()}))
    assert taken == [True, True]
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5,
                               atol=1e-6)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, rtol=1e-4,
                                   atol=1e-6, msg=name)


def _ptxas_all():
    """The ptxas binaries the triton wheel ships (3.9 ships a second one
    for the PTX versions it emits)."""
    folder = os.path.join(os.path.dirname(triton.__file__), 'backends',
                          'nvidia', 'bin')
    return [os.path.join(folder, name) for name in ('ptxas', 'ptxas-blackwell')
            if os.path.exists(os.path.join(folder, name))]


def _ptxas():
    found = _ptxas_all()
    return found[0] if found else None


TRITON_TYPES = {torch.float16: 'fp16', torch.bfloat16: 'bf16',
                torch.float32: 'fp32', torch.float64: 'fp64'}


def capture_launches(monkeypatch, shape, kernel, stride, padding, dtype,
                     device='cpu'):
    """The three kernel launches of a conv's forward and backward, recorded
    instead of run: ``(fn, device, programs, args, warps, constexprs)``."""
    launches = []
    monkeypatch.setattr(td, '_launch', lambda *args: launches.append(args))
    x = torch.empty(shape, dtype=dtype, device=device)
    weight = torch.empty((shape[1], 1) + kernel, dtype=dtype, device=device)
    out = td._forward(x, weight, stride, padding)
    td._grad_input(out, weight, x.shape, stride, padding)
    td._grad_weight(x, out, weight, stride, padding)
    assert [launch[0].__name__ for launch in launches] == [
        '_forward_kernel', '_grad_input_kernel', '_grad_weight_kernel']
    return launches


def compile_for_sm90(launch, tmp_path):
    """Compile a recorded launch for sm_90 (no GPU needed): its registers a
    thread and spilled bytes, as ptxas reports them."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    fn, _, _, args, warps, constexprs = launch
    names = [n for n in fn.__code__.co_varnames[:fn.__code__.co_argcount]
             if n not in constexprs]
    assert len(names) == len(args)
    signature = {
        name: ('*' + TRITON_TYPES[arg.dtype]) if torch.is_tensor(arg)
        else 'i32' for name, arg in zip(names, args)}
    signature.update({name: 'constexpr' for name in constexprs})
    compiled = triton.compile(
        ASTSource(triton.jit(fn), signature, constexprs),
        target=GPUTarget('cuda', 90, 32), options=dict(num_warps=warps))
    path = tmp_path / f'{fn.__name__}.ptx'
    path.write_text(compiled.asm['ptx'])
    for ptxas in _ptxas_all():  # the first that takes the PTX version
        info = subprocess.run(
            [ptxas, '-v', '--gpu-name', 'sm_90a', str(path), '-o',
             os.devnull], capture_output=True, text=True, timeout=120).stderr
        if 'Unsupported .version' not in info:
            break
    registers = re.search(r'Used (\d+) registers', info)
    spills = re.search(r'(\d+) bytes spill stores', info)
    assert registers and spills, f'ptxas -v printed: {info[-500:]}'
    return int(registers.group(1)), int(spills.group(1))


needs_ptxas = [
    pytest.mark.skipif(_ptxas() is None,
                       reason='no ptxas in the triton wheel'),
    pytest.mark.skipif(os.environ.get('TRITON_INTERPRET') == '1',
                       reason='TRITON_INTERPRET=1: triton.jit interprets')]


@needs_ptxas[0]
@needs_ptxas[1]
def test_kernels_compile_for_sm90_without_spills(monkeypatch, tmp_path):
    """The three kernels, as launched for a float16 stride-2 kt=3 k=3 conv
    (E3D's common case), compile for an H100/H200 (sm_90) here, without a
    GPU, to at most 128 registers a thread and no spills."""
    monkeypatch.setenv('TRITON_CACHE_DIR', str(tmp_path / 'cache'))
    for launch in capture_launches(monkeypatch, (2, 4, 8, 56, 56),
                                   (3, 3, 3), (1, 2, 2), (1, 1, 1), F16):
        registers, spills = compile_for_sm90(launch, tmp_path)
        assert registers <= 128 and spills == 0, (launch[0].__name__,
                                                  registers, spills)


def e3d_m_depthwise_convs():
    """(input shape, kernel, stride, padding) of every distinct depthwise
    conv of E3D-M on a 16x224x224 clip, batch 8 (on the meta device)."""
    model = E3D(arch='E3D-M', depthwise_triton=True).to('meta')
    convs = set()
    for module in model.modules():
        if isinstance(module, DepthwiseConv3d):
            module.register_forward_hook(lambda m, i, o: convs.add(
                (tuple(i[0].shape), m.kernel_size, m.stride, m.padding)))
    with torch.no_grad():
        model(torch.empty(8, 3, 16, 224, 224, device='meta'))
    return sorted(convs)


@pytest.mark.slow
@needs_ptxas[0]
@needs_ptxas[1]
def test_every_e3d_m_kernel_compiles_without_spills(monkeypatch, tmp_path):
    """Every kernel E3D-M launches in a training step (float32 and float16)
    compiles for sm_90 without spills."""
    monkeypatch.setenv('TRITON_CACHE_DIR', str(tmp_path / 'cache'))
    convs = e3d_m_depthwise_convs()
    assert len(convs) == 8
    seen = {}
    for dtype in (torch.float32, F16):
        for conv in convs:
            for launch in capture_launches(monkeypatch, *conv, dtype,
                                           device='meta'):
                key = (launch[0].__name__, dtype, launch[4],
                       tuple(sorted(launch[5].items(), key=str)))
                if key not in seen:
                    seen[key] = compile_for_sm90(launch, tmp_path)
    assert len(seen) >= 24
    bad = {k[:2] + (str(dict(k[3])), ): v for k, v in seen.items()
           if v[1] or v[0] > 128}
    assert not bad, bad


def test_backbone_speed_profile_counts_the_triton_convs():
    """bench/backbone_speed.py --profile finds the Triton depthwise work by
    its forward range and its backward node (interpreted here), beside a
    dense conv it counts as conv."""
    from tests.helpers import ROOT, load_tool
    bench = load_tool(os.path.join(ROOT, 'bench', 'backbone_speed.py'))
    torch.manual_seed(0)
    dense = nn.Conv3d(1, 4, 1, bias=False)
    weight = nn.Parameter(torch.randn(4, 1, 3, 3, 3) * 0.1)
    clips = torch.randn(1, 1, 3, 6, 6)

    def train_step():
        out = depthwise_conv3d_triton(dense(clips), weight, 1, 1)
        assert type(out.grad_fn).__name__ == bench.TRITON_BACKWARD
        out.square().mean().backward()

    assert bench.TRITON_FORWARD == td.PROFILE_FORWARD
    train = bench.profile_steps(train_step, 1, lambda: None, False)
    assert (train['dw_forward'], train['dw_backward']) == (1, 1)
    assert 0 < train['dw_ms'] < train['conv_ms'] <= train['step_ms']
