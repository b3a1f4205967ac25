"""The temporal receptive field of a structure, and the search space's
``min_temporal_rf`` that refuses motion-blind structures."""
import random

import pytest
import torch

from e3d_plugin.models import E3D
from e3d_plugin.nas import E3DSearchSpace
from e3d_plugin.nas.evolution import EntropyEvolution, SearchError
from e3d_plugin.structure import Structure, get_preset
from e3d_plugin.units import temporal_receptive_field

SPACE = 'E3DSearchSpace: '


def structure(*body, stem_kt=1):
    blocks = [dict(kind='conv', **{'in': 3, 'out': 8}, k=3, kt=stem_kt, s=2)]
    width = 8
    for kind, kt, depth in body:
        block = dict(kind=kind, **{'in': width, 'out': 16}, k=3, kt=kt, s=1,
                     L=depth)
        if kind in ('btn', 'dwbtn'):
            block['btn'] = 16
        blocks.append(block)
        width = 16
    blocks.append(dict(kind='conv', **{'in': width, 'out': 16}, k=1, kt=1,
                       s=1))
    return Structure.from_dicts(blocks)


def measured_field(struct, frames=24):
    """Frames of the input whose change reaches the output's middle frame
    in the built backbone (eval mode, no zero-init, so every branch passes
    a gradient)."""
    torch.manual_seed(0)
    model = E3D(structure=struct.to_dicts(), zero_init_residual=False,
                fast_depthwise=False).eval()
    clip = torch.randn(1, 3, frames, 8, 8, requires_grad=True)
    out = model(clip)
    out[:, :, frames // 2].sum().backward()
    seen = clip.grad.abs().sum(dim=(0, 1, 3, 4)) > 0
    return int(seen.sum())


@pytest.mark.parametrize('body,stem_kt,expected', [
    ((('dwbtn', 1, 3), ), 1, 1),
    ((('dwbtn', 3, 1), ), 1, 3),
    ((('dwbtn', 3, 2), ('btn', 1, 1)), 1, 5),
    ((('res', 3, 1), ), 1, 5),
    ((('res', 5, 1), ('dwbtn', 3, 2)), 3, 1 + 2 + 8 + 4),
    ((('btn', 3, 1), ('conv', 3, 2)), 1, 7),
])
def test_field_matches_the_built_backbone(body, stem_kt, expected):
    struct = structure(*body, stem_kt=stem_kt)
    assert temporal_receptive_field(struct) == expected
    assert measured_field(struct) == expected


def test_presets_see_motion():
    assert temporal_receptive_field(get_preset('E3D-XS')) == 11
    for name in ('E3D-S', 'E3D-M', 'E3D-L'):
        assert temporal_receptive_field(get_preset(name)) > 1


@pytest.mark.parametrize('value,message', [
    (0, 'min_temporal_rf must be an integer in [1, 4096], got 0'),
    (2.0, 'min_temporal_rf must be an integer in [1, 4096], got 2.0'),
    (True, 'min_temporal_rf must be an integer in [1, 4096], got True'),
    ('2', "min_temporal_rf must be an integer in [1, 4096], got '2'"),
    (10**6, 'min_temporal_rf must be an integer in [1, 4096], got 1000000'),
])
def test_bad_values(value, message):
    with pytest.raises(ValueError) as info:
        E3DSearchSpace(min_temporal_rf=value)
    assert str(info.value) == SPACE + message


def test_needs_a_temporal_kernel():
    with pytest.raises(ValueError, match='needs a temporal kernel'):
        E3DSearchSpace(kernels=((1, 3), (1, 5)), min_temporal_rf=2)
    E3DSearchSpace(kernels=((1, 3), (1, 5)))  # fine without the limit


def _draws(space, seed=0, n=300):
    rng = random.Random(seed)
    xs = get_preset('E3D-XS')
    samples = [space.sample(xs, rng) for _ in range(n)]
    mutants = []
    current = xs
    for _ in range(n):
        current = space.mutate(current, rng)
        mutants.append(current)
    children = [space.crossover(samples[i], samples[-1 - i], rng)
                for i in range(n)]
    return samples, mutants, children


def test_off_by_default_and_unchanged():
    default = E3DSearchSpace(image_size=40, frames=8)
    explicit = E3DSearchSpace(image_size=40, frames=8, min_temporal_rf=1)
    assert _draws(default) == _draws(explicit)
    assert 'min_temporal_rf' not in default.settings()
    assert E3DSearchSpace(min_temporal_rf=3).settings()[
        'min_temporal_rf'] == 3
    # the default space does draw motion-blind structures at 8x40x40
    samples, _, _ = _draws(default)
    assert any(temporal_receptive_field(s) == 1 for s in samples)


@pytest.mark.parametrize('limit', [2, 5, 9])
def test_every_draw_sees_enough(limit):
    space = E3DSearchSpace(image_size=40, frames=8, min_temporal_rf=limit)
    for group in _draws(space, seed=limit):
        fields = [temporal_receptive_field(s) for s in group]
        assert min(fields) >= limit
        assert all(space.check(s) == [] for s in group)


def test_check_names_the_field():
    blind = structure(('dwbtn', 1, 2))
    space = E3DSearchSpace(image_size=16, frames=8, min_temporal_rf=2,
                           kernels=((1, 3), (3, 3)))
    problems = space.check(blind)
    assert problems == [
        'the temporal receptive field is 1 frame, below min_temporal_rf 2 '
        '(a structure needs temporal kernels (kt > 1) to see motion)']
    assert E3DSearchSpace(image_size=16, frames=8).check(blind) == []


def test_a_blind_parent_is_repaired():
    space = E3DSearchSpace(image_size=16, frames=8, min_temporal_rf=3,
                           kernels=((1, 3), (3, 3)))
    blind = structure(('dwbtn', 1, 2), ('dwbtn', 1, 1))
    rng = random.Random(1)
    for _ in range(50):
        child = space.mutate(blind, rng)
        assert temporal_receptive_field(child) >= 3


def test_unreachable_limit_is_refused_when_sampling():
    # a 2-frame clip fits no kt=3 kernel (kernel_margin 1.5 x 3 > 2)
    space = E3DSearchSpace(image_size=40, frames=2, min_temporal_rf=2)
    with pytest.raises(ValueError, match='min_temporal_rf 2 cannot be '
                       'reached'):
        space.sample(get_preset('E3D-XS'), random.Random(0))


def test_search_refuses_a_blind_start_and_finds_a_seeing_best():
    blind = [dict(b) for b in get_preset('E3D-XS').to_dicts()]
    for block in blind:
        block['kt'] = 1
    space = dict(type='E3DSearchSpace', image_size=40, frames=8,
                 min_temporal_rf=2)
    score = dict(type='STEntrScore', image_size=40, frames=8,
                 stage_weights=(0, 0, 0, 1))
    with pytest.raises(SearchError, match='init_structure: the temporal '
                       'receptive field is 1 frame'):
        EntropyEvolution(score=score, space=space, init_structure=blind,
                         budgets=dict(flops=1.72e7), num_candidates=10,
                         progress=False)
    search = EntropyEvolution(score=score, space=space,
                              init_structure='E3D-XS',
                              budgets=dict(flops=1.72e7, layers=20),
                              num_candidates=2000, progress=False)
    result = search.run()
    assert temporal_receptive_field(result['best_structure']) >= 2
    assert all(temporal_receptive_field(entry['structure']) >= 2
               for entry in result['top_k'])


def test_temporal_coverage_option_of_the_score():
    from e3d_plugin.nas import STEntrScore
    args = dict(image_size=40, frames=8, stage_weights=(0, 0, 0, 1))
    plain = STEntrScore(**args)
    covered = STEntrScore(**args, temporal_coverage=True)
    xs = get_preset('E3D-XS')  # sees 11 >= 8 frames: unchanged
    assert covered(xs) == plain(xs)
    blind = Structure.from_dicts(
        [dict(b, kt=1) for b in xs.to_dicts()])
    assert covered(blind) == pytest.approx(plain(blind) / 8, rel=1e-12)
    three = Structure.from_dicts(
        [dict(b, kt=3 if i == 2 else 1) for i, b in enumerate(
            xs.to_dicts())])
    assert temporal_receptive_field(three) == 1 + 2 * xs[2].depth
    seen = min(temporal_receptive_field(three), 8)
    assert covered(three) == pytest.approx(plain(three) * seen / 8,
                                           rel=1e-12)
    assert 'temporal_coverage' not in plain.settings()
    assert covered.settings()['temporal_coverage'] is True
    assert repr(covered).endswith('temporal_coverage=True)')
    with pytest.raises(ValueError, match='temporal_coverage must be True '
                       'or False'):
        STEntrScore(temporal_coverage='yes')
