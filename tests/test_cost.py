"""The analytic cost model against the built backbone and the paper."""
import pytest
import torch
from mmengine.analysis import FlopAnalyzer

from e3d_plugin.cost import analyze_cost, compute_cost, output_shape
from e3d_plugin.models import E3D
from e3d_plugin.structure import Structure, load_structure


def measured(structure, image_size, frames):
    """FLOPs (conv + linear), params and output shape of the built module."""
    model = E3D(structure=list(structure)).eval()
    height, width = (image_size, image_size) if isinstance(
        image_size, int) else image_size
    x = torch.randn(1, structure.in_channels, frames, height, width)
    with torch.no_grad():
        out = model(x)
    counts = FlopAnalyzer(model, x).unsupported_ops_warnings(
        False).uncalled_modules_warnings(False).by_operator()
    flops = counts.get('conv', 0) + counts.get('linear', 0)
    params = sum(p.numel() for p in model.parameters())
    layers = sum(
        1 for name, m in model.named_modules()
        if isinstance(m, torch.nn.Conv3d) and '.se.' not in name)
    return flops, params, layers, tuple(out.shape[1:])


CASES = [
    ('res', 0.0, None),
    ('btn', 0.0, None),
    ('dwbtn', 0.0, None),
    ('res', 0.25, 'swish'),
    ('btn', 0.25, 'swish'),
    ('dwbtn', 0.0625, 'relu'),
]


@pytest.mark.parametrize('kind,se,act', CASES)
@pytest.mark.parametrize('image_size,frames', [(32, 4), ((37, 29), 3)])
def test_cost_equals_built_module(structure_of, kind, se, act, image_size,
                                  frames):
    structure = Structure.from_dicts(structure_of(kind, se=se, act=act))
    cost = compute_cost(structure, image_size, frames)
    flops, params, layers, shape = measured(structure, image_size, frames)
    # exact, which is well within the 1% asked for
    assert cost.flops == flops
    assert cost.params == params
    assert cost.layers == layers
    assert output_shape(structure, image_size, frames) == shape


def test_per_block_rows_sum_to_totals():
    report = analyze_cost(load_structure('E3D-M'), 224, 16)
    assert sum(b.flops for b in report.blocks) == report.flops
    assert sum(b.params for b in report.blocks) == report.params
    assert [b.out_shape for b in report.blocks] == [
        (24, 16, 112, 112), (24, 16, 56, 56), (64, 16, 28, 28),
        (120, 16, 14, 14), (120, 16, 14, 14), (184, 16, 7, 7),
        (512, 16, 7, 7)]
    assert report.input_shape == (3, 16, 224, 224)


# name, clip (frames, size), paper GFLOPs, cost-model figures
PRESETS = [
    ('E3D-S', (13, 160), 1.9, 1863680000, 1976232, 83),
    ('E3D-M', (16, 224), 4.7, 4642910720, 1840680, 83),
    ('E3D-L', (16, 312), 18.3, 18340335744, 4097744, 167),
]


@pytest.mark.parametrize('name,clip,paper,flops,params,layers', PRESETS)
def test_presets_match_paper(name, clip, paper, flops, params, layers):
    frames, size = clip
    cost = compute_cost(load_structure(name), size, frames)
    assert cost == (flops, params, layers)
    assert abs(cost.flops / 1e9 - paper) / paper < 0.05


@pytest.mark.parametrize('name,clip,paper,flops,params,layers', PRESETS[:2])
def test_presets_equal_built_module(name, clip, paper, flops, params, layers):
    frames, size = clip
    measured_flops, measured_params, measured_layers, _ = measured(
        load_structure(name), size, frames)
    assert (measured_flops, measured_params, measured_layers) == (flops,
                                                                  params,
                                                                  layers)


@pytest.mark.slow
def test_large_preset_equals_built_module():
    name, (frames, size), _, flops, params, layers = PRESETS[2]
    # 312 is not a multiple of 32: stride-2 convs round up (39 -> 20 -> 10)
    result = measured(load_structure(name), size, frames)
    assert result == (flops, params, layers, (512, 16, 10, 10))
