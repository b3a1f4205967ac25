"""Constructor arguments of the score, the space and the latency table: a
wrong type or value is one ValueError naming the argument, never a silently
different value."""
import math

import pytest

from e3d_plugin.checks import check_bool, check_int, check_list, check_number
from e3d_plugin.nas import (E3DSearchSpace, LatencyError, LatencyTable,
                            RandomScore, STEntrScore)

NAN, INF = float('nan'), float('inf')

SCORE_CASES = [
    (dict(refine='false'), "STEntrScore: refine must be True or False (a "
     "boolean, not the string; write it without quotes), got 'false'"),
    (dict(refine='true'), 'STEntrScore: refine must be True or False'),
    (dict(refine=1), 'STEntrScore: refine must be True or False, got 1'),
    (dict(refine=None), 'STEntrScore: refine must be True or False, got '
     'None'),
    (dict(stage_weights=1), 'STEntrScore: stage_weights must be a non-empty '
     'list of finite numbers, one per stage, got 1'),
    (dict(stage_weights='00001'), 'STEntrScore: stage_weights must be a '
     "non-empty list of finite numbers, one per stage, got '00001'"),
    (dict(stage_weights=[]), 'STEntrScore: stage_weights must be a non-empty'
     ' list'),
    (dict(stage_weights=[0, 0, 0, 0, NAN]), 'STEntrScore: stage_weights must'
     ' be a list of finite numbers, one per stage (nan is not one), got [0, '
     '0, 0, 0, nan]'),
    (dict(stage_weights=[0, 0, 0, 0, INF]), 'STEntrScore: stage_weights must'
     ' be a list of finite numbers, one per stage (inf is not one)'),
    (dict(stage_weights=[0, 0, 0, 0, '1']), 'STEntrScore: stage_weights must'
     " be a list of finite numbers, one per stage ('1' is not one)"),
    (dict(stage_weights=[0, 0, 0, 0, True]), 'STEntrScore: stage_weights '
     'must be a list of finite numbers, one per stage (True is not one)'),
    (dict(stage_weights=[0, 0, 0, 0, 0]), 'STEntrScore: stage_weights must '
     'have a non-zero weight, got [0.0, 0.0, 0.0, 0.0, 0.0]; every structure '
     'would score 0'),
    (dict(image_size='224'), 'STEntrScore: image_size must be a positive '
     'integer or a (height, width) pair of positive integers, got '
     "'224'"),
    (dict(image_size=224.0), 'STEntrScore: image_size must be a positive '
     'integer'),
    (dict(image_size=(224, NAN)), 'STEntrScore: image_size must be'),
    (dict(image_size=True), 'STEntrScore: image_size must be'),
    (dict(frames='16'), "STEntrScore: frames must be an integer >= 1, got "
     "'16'"),
    (dict(frames=16.0), 'STEntrScore: frames must be an integer >= 1, got '
     '16.0'),
    (dict(frames=True), 'STEntrScore: frames must be an integer >= 1, got '
     'True'),
    (dict(frames=0), 'STEntrScore: frames must be an integer >= 1, got 0'),
]


@pytest.mark.parametrize('kwargs,message', SCORE_CASES)
def test_score_arguments(kwargs, message):
    with pytest.raises(ValueError) as info:
        STEntrScore(**kwargs)
    assert str(info.value).startswith(message), str(info.value)


def test_score_accepts_what_configs_give():
    score = STEntrScore(image_size=[160, 120], frames=13,
                        stage_weights=[0, 0, 0, 0, 1], refine=False)
    assert score.image_size == (160, 120) and score.refine is False
    assert score.stage_weights == (0.0, 0.0, 0.0, 0.0, 1.0)
    assert score.settings() == dict(image_size=[160, 120], frames=13,
                                    stage_weights=[0.0, 0.0, 0.0, 0.0, 1.0],
                                    refine=False)
    np = pytest.importorskip('numpy')
    assert STEntrScore(np.int64(64), np.int64(8),
                       refine=np.bool_(True)).refine is True


@pytest.mark.parametrize('kwargs,message', [
    (dict(seed='0'), "RandomScore: seed must be an integer, got '0'"),
    (dict(seed=1.5), 'RandomScore: seed must be an integer, got 1.5'),
    (dict(seed=True), 'RandomScore: seed must be an integer, got True'),
    (dict(seed=[0]), 'RandomScore: seed must be an integer, got [0]'),
    (dict(sed=1), "RandomScore: unknown argument 'sed'; it takes seed (and "
     'ignores image_size, frames, stage_weights, refine)'),
])
def test_random_score_arguments(kwargs, message):
    with pytest.raises(ValueError) as info:
        RandomScore(**kwargs)
    assert str(info.value) == message


def test_random_score_ignores_the_entropy_arguments():
    score = RandomScore(seed=3, image_size=224, frames=16, refine=False)
    assert score.seed == 3 and score.settings() == dict(seed=3)
    assert score(['x']) == RandomScore(seed=3)(['x'])


SPACE = 'E3DSearchSpace: '
SPACE_CASES = [
    (dict(image_size=[224]), SPACE + 'image_size must be a positive integer '
     'or a (height, width) pair of positive integers, got [224]'),
    (dict(frames=NAN), SPACE + 'frames must be an integer >= 1, got nan'),
    (dict(kernels=3), SPACE + 'kernels must be a non-empty list of (kt, k) '
     'pairs of odd integers in 1..63, got 3'),
    (dict(kernels=[3, 5]), SPACE + 'kernels must be a list of (kt, k) pairs '
     'of odd integers in 1..63 (3 is not one), got [3, 5]'),
    (dict(kernels=[(1, 4)]), SPACE + 'kernels must be a list of (kt, k) '
     'pairs of odd integers in 1..63 ((1, 4) is not one)'),
    (dict(kernels=[(1, 3.0)]), SPACE + 'kernels must be a list of (kt, k) '
     'pairs'),
    (dict(kernels=[(True, 3)]), SPACE + 'kernels must be a list of (kt, k) '
     'pairs'),
    (dict(kernels=[]), SPACE + 'kernels must be a non-empty list'),
    (dict(width_multipliers=2.0), SPACE + 'width_multipliers must be a '
     'non-empty list of finite positive numbers, got 2.0'),
    (dict(width_multipliers=[2.0, '1.5']), SPACE + 'width_multipliers must '
     "be a list of finite positive numbers ('1.5' is not one), got [2.0, "
     "'1.5']"),
    (dict(width_multipliers=[2.0, NAN]), SPACE + 'width_multipliers must be '
     'a list of finite positive numbers (nan is not one)'),
    (dict(width_multipliers=[INF]), SPACE + 'width_multipliers must be a '
     'list of finite positive numbers (inf is not one)'),
    (dict(width_multipliers=[0.0]), SPACE + 'width_multipliers must be a '
     'list of finite positive numbers (0.0 is not one)'),
    (dict(bottleneck_ratios=[True]), SPACE + 'bottleneck_ratios must be a '
     'list of finite positive numbers (True is not one)'),
    (dict(bottleneck_ratios='2.0'), SPACE + 'bottleneck_ratios must be a '
     "non-empty list of finite positive numbers, got '2.0'"),
    (dict(depth_steps=1), SPACE + 'depth_steps must be a non-empty list of '
     'non-zero integers, got 1'),
    (dict(depth_steps=[1, 0]), SPACE + 'depth_steps must be a list of '
     'non-zero integers (0 is not one), got [1, 0]'),
    (dict(depth_steps=[1.0]), SPACE + 'depth_steps must be a list of '
     'non-zero integers (1.0 is not one)'),
    (dict(depth_steps=[True]), SPACE + 'depth_steps must be a list of '
     'non-zero integers (True is not one)'),
    (dict(kinds='dwbtn'), SPACE + 'kinds must be a non-empty list of block '
     "kinds (conv, res, btn, dwbtn), got 'dwbtn'"),
    (dict(kinds=['dwbtn', 'sep']), SPACE + 'kinds must be a list of block '
     "kinds (conv, res, btn, dwbtn) ('sep' is not one)"),
    (dict(kinds=[['dwbtn']]), SPACE + 'kinds must be a list of block kinds'),
    (dict(max_width='640'), SPACE + "max_width must be an integer in [8, "
     "65536], got '640'"),
    (dict(max_width=640.0), SPACE + 'max_width must be an integer in [8, '
     '65536], got 640.0'),
    (dict(max_width=4), SPACE + 'max_width must be an integer in [8, 65536], '
     'got 4'),
    (dict(max_width=10**6), SPACE + 'max_width must be an integer in [8, '
     '65536], got 1000000'),
    (dict(max_stem_width=None), SPACE + 'max_stem_width must be an integer '
     'in [8, 65536], got None'),
    (dict(max_first_depth=0), SPACE + 'max_first_depth must be an integer in'
     ' [1, 1024], got 0'),
    (dict(max_depth=True), SPACE + 'max_depth must be an integer in [1, 1024]'
     ' or None, got True'),
    (dict(max_depth=INF), SPACE + 'max_depth must be an integer in [1, 1024]'
     ' or None, got inf'),
    (dict(max_depth=5000), SPACE + 'max_depth must be an integer in [1, 1024]'
     ' or None, got 5000'),
    (dict(width_divisor=0), SPACE + 'width_divisor must be an integer >= 1, '
     'got 0'),
    (dict(width_divisor=8.0), SPACE + 'width_divisor must be an integer >= '
     '1, got 8.0'),
    (dict(kernel_margin='1.5'), SPACE + 'kernel_margin must be a finite '
     "positive number, got '1.5'"),
    (dict(kernel_margin=NAN), SPACE + 'kernel_margin must be a finite '
     'positive number, got nan'),
    (dict(kernel_margin=False), SPACE + 'kernel_margin must be a finite '
     'positive number, got False'),
    (dict(mutations_per_candidate=0), SPACE + 'mutations_per_candidate must '
     'be an integer >= 1, got 0'),
    (dict(mutations_per_candidate=[2]), SPACE + 'mutations_per_candidate '
     'must be an integer >= 1, got [2]'),
]


@pytest.mark.parametrize('kwargs,message', SPACE_CASES)
def test_space_arguments(kwargs, message):
    with pytest.raises(ValueError) as info:
        E3DSearchSpace(**kwargs)
    assert str(info.value).startswith(message), str(info.value)


def test_space_accepts_what_configs_give():
    space = E3DSearchSpace(image_size=[64, 48], frames=8,
                           kernels=[[1, 3], (3, 3)],
                           width_multipliers=[2, 0.5],
                           bottleneck_ratios=(4, 1.5), depth_steps=(-1, 1),
                           kinds=['dwbtn', 'btn'], max_depth=None,
                           kernel_margin=1)
    assert space.image_size == (64, 48)
    assert space.kernels == ((1, 3), (3, 3))
    assert space.width_multipliers == (2.0, 0.5)
    assert space.bottleneck_ratios == (1.5, 4.0)
    assert space.kinds == ('dwbtn', 'btn') and space.max_depth is None
    assert space.settings()['kernel_margin'] == 1.0


LATENCY_CASES = [
    (dict(batch_size=True), 'latency: batch_size must be an integer >= 1, '
     'got True'),
    (dict(batch_size='2'), "latency: batch_size must be an integer >= 1, got"
     " '2'"),
    (dict(num_threads=0), 'latency: num_threads must be an integer >= 1 or '
     'None, got 0'),
    (dict(channels_last='false'), 'latency: channels_last must be True or '
     "False (a boolean, not the string; write it without quotes), got "
     "'false'"),
    (dict(measure='no'), 'latency: measure must be True or False (a '
     "boolean, not the string; write it without quotes), got 'no'"),
    (dict(warmup_ms=NAN), 'latency: warmup_ms must be a finite number >= 0, '
     'got nan'),
    (dict(min_sample_ms='2'), 'latency: min_sample_ms must be a finite '
     "number >= 0, got '2'"),
    (dict(repeat=0), 'latency: repeat must be an integer >= 1, got 0'),
    (dict(act=['relu']), "latency act must be one of ('relu', 'swish'), got "
     "['relu']"),
    (dict(device=['cpu']), "latency device must be 'cpu' or 'cuda[:N]', got "
     "['cpu']"),
    (dict(device='cuda:x'), "latency device must be 'cpu' or 'cuda[:N]', got"
     " 'cuda:x'"),
    (dict(table_file=5), 'latency: table_file must be a path or None, got '
     'int'),
]


@pytest.mark.parametrize('kwargs,message', LATENCY_CASES)
def test_latency_table_arguments(tmp_path, kwargs, message):
    kwargs.setdefault('table_file', str(tmp_path / 't.json'))
    with pytest.raises(LatencyError) as info:
        LatencyTable(**kwargs)
    assert str(info.value) == message


def test_check_helpers():
    assert check_int('o', 'n', 3, low=1, high=3) == 3
    with pytest.raises(ValueError, match=r'^o: n must be an integer in '
                       r'\[1, 2\], got 3$'):
        check_int('o', 'n', 3, low=1, high=2)
    assert check_number('', 'x', 2) == 2.0
    with pytest.raises(ValueError, match='^x must be a finite number, got '
                       'inf$'):
        check_number('', 'x', math.inf)
    assert check_bool('o', 'b', False) is False
    assert check_list('o', 'l', (1, 2), int, 'ints') == (1, 2)
    assert check_list('o', 'l', [], int, 'ints', allow_empty=True) == ()
    with pytest.raises(ValueError, match=r"^o: l must be a list of ints "
                       r"\('a' is not one\), got \[1, 'a'\]$"):
        check_list('o', 'l', [1, 'a'], int, 'ints')
    long = 'x' * 1000
    with pytest.raises(ValueError) as info:
        check_int('o', 'n', long)
    assert len(str(info.value)) < 120 and str(info.value).endswith("xx...")
