"""The proxy zoo: each score against an independent computation on a tiny
network, determinism under the seed, argument checks, searches with them
(the general path, resume after a kill, the tool's one-line errors)."""
import math
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from e3d_plugin.nas import (EntropyEvolution, FlopsScore, GradNormScore,
                            LayersScore, NASWOTScore, ParamsScore,
                            SynFlowScore, ZenScore, ZiCoScore)
from e3d_plugin.registry import SCORES, build
from e3d_plugin.structure import Structure, load_structure
from tests.helpers import ROOT, kill_after_first_checkpoint, load_tool

#: Stem (3 -> 4, stride 2), one dwbtn unit with its identity shortcut
#: (4 -> 8 -> 8 depthwise 3x3x3 -> 4), final 1x1x1 conv (4 -> 8).
TINY = Structure.from_dicts([
    dict(kind='conv', **{'in': 3, 'out': 4}, k=3, kt=1, s=2),
    dict(kind='dwbtn', **{'in': 4, 'out': 4}, k=3, kt=3, s=1, L=1, btn=8),
    dict(kind='conv', **{'in': 4, 'out': 8}, k=1, kt=1, s=1),
])
#: The clip of the tests: 2 frames of 8x8.
CLIP = dict(image_size=8, frames=2)
NETWORK_SCORES = (ZenScore, NASWOTScore, SynFlowScore, GradNormScore,
                  ZiCoScore)
EPS = 1e-5  # BatchNorm3d's


def plain_forward(w, x, norm, pre_activations=None):
    """TINY's backbone written out with ``F.conv3d`` from the weights
    ``w`` (its state dict): ``norm(y, prefix)`` stands for each batch norm;
    ``pre_activations`` collects every ReLU's input."""
    def relu(y):
        if pre_activations is not None:
            pre_activations.append(y)
        return torch.clamp(y, min=0)

    def conv(y, prefix, stride=1, padding=0, groups=1, act=True):
        y = F.conv3d(y, w[prefix + '.conv.weight'], None, (1, stride, stride),
                     padding, 1, groups)
        y = norm(y, prefix + '.bn')
        return relu(y) if act else y

    stem = conv(x, 'blocks.0.0.conv', stride=2, padding=(0, 1, 1))
    branch = conv(stem, 'blocks.1.0.conv1')
    branch = conv(branch, 'blocks.1.0.conv2', padding=1, groups=8)
    branch = conv(branch, 'blocks.1.0.conv3', act=False)
    out = relu(branch + stem)
    return conv(out, 'blocks.2.0.conv')


def train_norm(w, variances=None):
    """Batch norm in train mode, by hand: the batch mean and the biased
    variance per channel; ``variances`` collects each norm's unbiased
    variance (what its running_var becomes with momentum 1)."""
    def norm(y, prefix):
        dims = (0, 2, 3, 4)
        mean = y.mean(dims, keepdim=True)
        count = y.numel() / y.shape[1]
        biased = ((y - mean)**2).mean(dims, keepdim=True)
        if variances is not None:
            variances.append(biased.flatten() * count / (count - 1))
        shape = (1, -1, 1, 1, 1)
        return ((y - mean) / torch.sqrt(biased + EPS) *
                w[prefix + '.weight'].view(shape) +
                w[prefix + '.bias'].view(shape))
    return norm


class Capture:
    """Records the networks a score builds, their inputs and the batches
    it draws."""

    def __init__(self, score):
        self.nets, self.inputs, self.heads, self.batches = [], [], [], []
        backbone, head = score.backbone, score.head

        def capture_backbone(structure):
            net = backbone(structure)
            net.register_forward_pre_hook(
                lambda module, args: self.inputs.append(args[0].clone()))
            self.nets.append(net)
            return net

        def capture_head(structure, num_classes):
            layer = head(structure, num_classes)
            self.heads.append(layer)
            return layer

        score.backbone = capture_backbone
        score.head = capture_head
        if hasattr(score, 'draw_batch'):
            draw = score.draw_batch

            def capture_batch(structure):
                batch = draw(structure)
                self.batches.append(batch)
                return batch
            score.draw_batch = capture_batch

    def weights(self, index=0, **kwargs):
        """The state dict of a captured network (tensors detached)."""
        return {k: v.detach().clone().to(**kwargs)
                for k, v in self.nets[index].state_dict().items()}


# ----------------------------------------------------------------------
# cost scores, by hand
def test_cost_scores_by_hand():
    # stem: 2x4x4 out, 4 x 3 x (1x3x3): 2*4*4 * 4*3*9 = 3456 FLOPs,
    # 108 + 8 (norm) params. dwbtn: 1x1 4->8 1024 FLOPs, 32 + 16; depthwise
    # 8 x 3x3x3: 2*4*4 * 8*27 = 6912, 216 + 16; 1x1 8->4: 1024, 32 + 8.
    # final 1x1 4->8: 1024, 32 + 16.
    assert FlopsScore(**CLIP)(TINY) == 3456 + 1024 + 6912 + 1024 + 1024
    assert ParamsScore(**CLIP)(TINY) == 116 + 48 + 232 + 40 + 48
    assert LayersScore(**CLIP)(TINY) == 1 + 3 + 1
    # the clip counts: 4x the pixels, 4x the FLOPs; a list of block dicts
    # is taken as well
    assert FlopsScore(image_size=16, frames=2)(TINY.to_dicts()) == 4 * 13440
    assert isinstance(FlopsScore(**CLIP)(TINY), float)


# ----------------------------------------------------------------------
# network scores against a plain computation of their definition
def test_zen_score_against_plain_computation():
    score = ZenScore(**CLIP, batch_size=3, mixup_gamma=0.01, seed=5)
    capture = Capture(score)
    value = score(TINY)
    w = capture.weights()
    convs = [v for k, v in w.items() if k.endswith('conv.weight')]
    # Gaussian weights (Zen-NAS's init): 216 depthwise weights of std ~1
    assert 0.8 < float(w['blocks.1.0.conv2.conv.weight'].std()) < 1.2
    assert len(convs) == 5
    x, perturbed = capture.inputs
    noise = (perturbed - x) / 0.01
    assert abs(float(noise.std()) - 1) < 0.1
    clean_out = plain_forward(w, x, train_norm(w))
    variances = []
    perturbed_out = plain_forward(w, perturbed, train_norm(w, variances))
    difference = (clean_out - perturbed_out).abs().sum((1, 2, 3, 4)).mean()
    expected = math.log(float(difference)) + sum(
        math.log(math.sqrt(float(v.mean()))) for v in variances)
    assert len(variances) == 5
    assert value == pytest.approx(expected, rel=1e-4)


def test_naswot_against_hamming_distances():
    score = NASWOTScore(**CLIP, batch_size=4, seed=2)
    capture = Capture(score)
    value = score(TINY)
    w = capture.weights()
    acts = []
    plain_forward(w, capture.inputs[0], train_norm(w), acts)
    assert len(acts) == 5  # stem, conv1, conv2, shortcut sum, final
    codes = np.concatenate([(a > 0).reshape(4, -1).numpy() for a in acts],
                           axis=1)
    units = codes.shape[1]
    kernel = np.array([[units - np.sum(codes[i] != codes[j])
                        for j in range(4)] for i in range(4)], float)
    sign, logdet = np.linalg.slogdet(kernel)
    assert sign > 0
    assert value == pytest.approx(logdet, rel=1e-9)


def test_synflow_against_plain_computation():
    score = SynFlowScore(**CLIP, num_classes=3, seed=1)
    capture = Capture(score)
    value = score(TINY)
    w = capture.weights()
    head = capture.heads[0]
    # BN removed, every parameter made positive, float64
    assert not any('.bn.' in k for k in w)
    assert all(v.dtype == torch.float64 for v in w.values())
    assert all(bool((v >= 0).all()) for v in w.values())
    assert capture.inputs[0].shape == (1, 3, 2, 8, 8)
    assert bool((capture.inputs[0] == 1).all())
    leaves = {k: v.clone().requires_grad_() for k, v in w.items()}
    head_w = head.weight.detach().clone().requires_grad_()
    head_b = head.bias.detach().clone()
    out = plain_forward(leaves, torch.ones(1, 3, 2, 8, 8,
                                           dtype=torch.float64),
                        lambda y, prefix: y)
    r = (out.mean((2, 3, 4)) @ head_w.T + head_b).sum()
    r.backward()
    flow = sum(float((v.detach() * v.grad).abs().sum())
               for v in list(leaves.values()) + [head_w])
    assert value == pytest.approx(math.log(flow), rel=1e-12)


def loss_gradients(w, head, x, labels):
    """Gradients of the cross entropy of TINY with head, by hand."""
    leaves = {k: v.clone().requires_grad_() for k, v in w.items()
              if k.endswith('.conv.weight')}
    weights = dict(w, **leaves)
    head_w = head.weight.detach().clone().requires_grad_()
    logits = plain_forward(weights, x, train_norm(weights)).mean(
        (2, 3, 4)) @ head_w.T + head.bias.detach()
    log_p = logits - torch.logsumexp(logits, 1, keepdim=True)
    loss = -log_p[torch.arange(len(labels)), labels].mean()
    loss.backward()
    return [v.grad for v in leaves.values()] + [head_w.grad]


def test_grad_norm_against_plain_computation():
    score = GradNormScore(**CLIP, batch_size=3, num_classes=4, seed=3)
    capture = Capture(score)
    value = score(TINY)
    (x, labels), = capture.batches
    assert x.shape == (3, 3, 2, 8, 8) and labels.shape == (3, )
    assert 0 <= int(labels.min()) and int(labels.max()) < 4
    grads = loss_gradients(capture.weights(), capture.heads[0], x, labels)
    assert len(grads) == 6
    expected = sum(float(g.norm()) for g in grads)
    assert value == pytest.approx(expected, rel=1e-5)


def test_zico_against_plain_computation():
    score = ZiCoScore(**CLIP, batch_size=2, batches=3, num_classes=4,
                      seed=4)
    capture = Capture(score)
    value = score(TINY)
    assert len(capture.batches) == 3
    w, head = capture.weights(), capture.heads[0]
    per_batch = [loss_gradients(w, head, x, labels)
                 for x, labels in capture.batches]
    expected = 0.0
    for layer in range(6):
        g = np.stack([per_batch[b][layer].numpy().ravel().astype(float)
                      for b in range(3)])
        std = g.std(axis=0)
        ratio = np.abs(g).mean(axis=0)[std != 0] / std[std != 0]
        expected += math.log(ratio.sum())
    assert value == pytest.approx(expected, rel=1e-3)


def test_repeats_average_the_draws():
    score = NASWOTScore(**CLIP, batch_size=4, repeats=3, seed=7)
    draws = []
    for repeat in range(3):
        torch.manual_seed(7 * 1000 + repeat)
        draws.append(score.measure(TINY))
    assert len(set(draws)) == 3
    assert score(TINY) == pytest.approx(sum(draws) / 3, rel=1e-12)


# ----------------------------------------------------------------------
# determinism, cost, memo
@pytest.mark.parametrize('cls', NETWORK_SCORES)
def test_network_scores_deterministic_under_seed(cls):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = cls(**CLIP, seed=11)
    value = first(TINY)
    # the caller's random state is untouched
    assert torch.equal(torch.rand(3), before)
    assert math.isfinite(value)
    assert cls(**CLIP, seed=11)(TINY) == value
    assert cls(**CLIP, seed=12)(TINY) != value
    assert first.last_ms > 0 and first.calls == 1
    # a structure met again is remembered, not recomputed
    assert first(TINY) == value and first.calls == 1
    assert cls(**CLIP, seed=11, memo_size=0)(TINY) == value


def test_network_scores_see_the_structure():
    wider = Structure.from_dicts([dict(b.to_dict(), out=16) if i == 2 else
                                  b.to_dict() for i, b in enumerate(TINY)])
    for cls in NETWORK_SCORES:
        score = cls(**CLIP)
        assert score(TINY) != score(wider), cls.__name__


def test_settings_and_repr():
    score = ZiCoScore(image_size=[8, 6], frames=2, batch_size=2, seed=1,
                      stage_weights=(0, 1), refine=False)
    assert score.settings() == dict(
        image_size=[8, 6], frames=2, batch_size=2, repeats=1, seed=1,
        num_classes=10, batches=2)
    assert repr(score) == (
        'ZiCoScore(image_size=(8, 6), frames=2, batch_size=2, repeats=1, '
        'seed=1, num_classes=10, batches=2)')
    assert 'batch_size' not in SynFlowScore(**CLIP).settings()
    assert FlopsScore(**CLIP).settings() == dict(image_size=[8, 8],
                                                 frames=2)
    assert isinstance(build(SCORES, dict(type='NASWOTScore', **CLIP)),
                      NASWOTScore)


def test_one_value_per_channel_is_refused():
    # a 1x1 final map of one frame: batch 1 leaves BN one value a channel
    with pytest.raises(ValueError, match=r'^GradNormScore: the last feature '
                       r'map of the structure is 1x1x1 at image_size \(2, '
                       r'2\): with batch_size 1 its batch norm sees one '
                       'value per channel; raise batch_size or image_size$'):
        GradNormScore(image_size=2, frames=1, batch_size=1)(TINY)
    assert math.isfinite(SynFlowScore(image_size=2, frames=1)(TINY))


BAD_ARGUMENTS = [
    (ZenScore, dict(repeats=0), 'ZenScore: repeats must be an integer in '
     '[1, 1000], got 0'),
    (ZenScore, dict(batch_size=2.0), 'ZenScore: batch_size must be an '
     'integer in [1, 4096], got 2.0'),
    (ZenScore, dict(mixup_gamma=0), 'ZenScore: mixup_gamma must be a finite '
     'positive number, got 0'),
    (ZenScore, dict(mixup_gamma=float('nan')), 'ZenScore: mixup_gamma must '
     'be a finite positive number, got nan'),
    (ZenScore, dict(seed=-1), 'ZenScore: seed must be an integer in [0, '
     '2147483647], got -1'),
    (ZenScore, dict(seed=True), 'ZenScore: seed must be an integer'),
    (NASWOTScore, dict(batch_size=1), 'NASWOTScore: batch_size must be an '
     'integer in [2, 4096], got 1'),
    (NASWOTScore, dict(frames='8'), "NASWOTScore: frames must be an integer "
     ">= 1, got '8'"),
    (NASWOTScore, dict(image_size=0), 'NASWOTScore: image_size must be a '
     'positive integer'),
    (NASWOTScore, dict(memo_size=-1), 'NASWOTScore: memo_size must be an '
     'integer >= 0, got -1'),
    (NASWOTScore, dict(num_classes=10), "NASWOTScore: unknown argument "
     "'num_classes'; it takes image_size, frames, batch_size, repeats, "
     'seed, memo_size, threads (and ignores stage_weights, refine, '
     'temporal_coverage)'),
    (NASWOTScore, dict(threads=-1), 'NASWOTScore: threads must be an '
     'integer in [0, 1024], got -1'),
    (SynFlowScore, dict(batch_size=4), "SynFlowScore: unknown argument "
     "'batch_size'; it takes image_size, frames, repeats, seed, "
     'num_classes, memo_size, threads'),
    (SynFlowScore, dict(num_classes=0), 'SynFlowScore: num_classes must be '
     'an integer in [1, 100000], got 0'),
    (GradNormScore, dict(num_classes=1), 'GradNormScore: num_classes must '
     'be an integer in [2, 100000], got 1'),
    (GradNormScore, dict(repeats=None), 'GradNormScore: repeats must be an '
     'integer in [1, 1000], got None'),
    (ZiCoScore, dict(batches=1), 'ZiCoScore: batches must be an integer in '
     '[2, 1000], got 1'),
    (ZiCoScore, dict(batch_size=0), 'ZiCoScore: batch_size must be an '
     'integer in [1, 4096], got 0'),
    (FlopsScore, dict(frames=0), 'FlopsScore: frames must be an integer >= '
     '1, got 0'),
    (ParamsScore, dict(image_size=(8, )), 'ParamsScore: image_size must be '
     'a positive integer'),
    (LayersScore, dict(seed=1), "LayersScore: unknown argument 'seed'; it "
     'takes image_size, frames (and ignores stage_weights, refine, '
     'temporal_coverage)'),
]


@pytest.mark.parametrize('cls,kwargs,message', BAD_ARGUMENTS)
def test_bad_arguments_one_line(cls, kwargs, message):
    with pytest.raises(ValueError) as info:
        cls(**kwargs)
    text = str(info.value)
    assert text.startswith(message) and '\n' not in text


# ----------------------------------------------------------------------
# searches with a zoo score
SEARCH_XS = osp.join(ROOT, 'configs', 'search_e3d_xs.py')


def tiny_search(score, **kwargs):
    """The XS search (its space and budgets at 8x64x64), few
    candidates."""
    from mmengine.config import Config
    cfg = Config.fromfile(SEARCH_XS)
    args = dict(score=score, space=cfg.space.to_dict(),
                init_structure='E3D-XS', budgets=cfg.search.budgets,
                num_candidates=40, population_size=8, seed=0,
                progress=False, checkpoint_interval=0, log_interval=10)
    args.update(kwargs)
    return EntropyEvolution(**args)


def test_flops_search_fills_the_budget():
    flops = tiny_search(dict(type='FlopsScore', image_size=64, frames=8),
                        num_candidates=400).run()
    budget = flops['budgets']['flops']
    assert flops['best_score'] == flops['best_cost']['flops'] <= budget
    population = flops['population']
    assert all(c.score == c.cost['flops'] for c in population)
    assert flops['settings']['score'] == dict(type='FlopsScore',
                                              image_size=[64, 64], frames=8)
    start = load_structure('E3D-XS')
    assert flops['best_score'] > FlopsScore(64, 8)(start)


def test_network_score_search_resumes_exactly(tmp_path, monkeypatch):
    score = dict(type='NASWOTScore', image_size=16, frames=2, batch_size=2,
                 stage_weights=(0, 0, 0, 1))
    full = tiny_search(score).run()
    assert full['settings']['score'] == dict(
        type='NASWOTScore', image_size=[16, 16], frames=2, batch_size=2,
        repeats=1, seed=0)
    work_dir = str(tmp_path)
    killed = tiny_search(score, work_dir=work_dir, checkpoint_interval=20)
    assert kill_after_first_checkpoint(killed, monkeypatch) == [20]
    resumed = tiny_search(score, work_dir=work_dir,
                          checkpoint_interval=20).run(resume=True)
    for key in ('best_score', 'best_structure', 'best_cost', 'curve',
                'num_evaluated'):
        assert resumed[key] == full[key], key
    assert [(c.score, c.structure) for c in resumed['population']] == [
        (c.score, c.structure) for c in full['population']]
    # and every member's score is the score of its structure
    naswot = NASWOTScore(16, 2, batch_size=2)
    for candidate in full['population'][:3]:
        assert naswot(candidate.structure) == candidate.score
    # another seed of the score is another search: resume refuses it
    from e3d_plugin.nas import SearchError
    with pytest.raises(SearchError, match=r"^--resume: score\.seed: 0 in "
                       'the checkpoint, 1 now'):
        tiny_search(dict(score, seed=1), work_dir=work_dir).run(
            resume=True)


@pytest.mark.parametrize('options,message', [
    (['score.type=ZenScore', 'score.repeats=0'],
     'error: score: ZenScore: repeats must be an integer in [1, 1000], got '
     '0'),
    (['score.type=NASWOTScore', 'score.batch_size=1'],
     'error: score: NASWOTScore: batch_size must be an integer in [2, 4096],'
     ' got 1'),
    (['score.type=SynFlowScore', 'score.seed=x'],
     "error: score.seed must be a finite number, got 'x'"),
    (['score.type=ZiCoScore', 'score.nope=1'],
     "error: score: ZiCoScore: unknown argument 'nope'"),
])
def test_search_tool_bad_score_argument_one_line(tmp_path, capsys, options,
                                                 message):
    tool = load_tool('search')
    code = tool.main([SEARCH_XS, '--work-dir', str(tmp_path / 'w'),
                      '--no-progress', '--cfg-options', *options])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count('\n') == 1
    assert not osp.exists(tmp_path / 'w')


def test_search_tool_with_a_zoo_score(tmp_path, capsys):
    tool = load_tool('search')
    work_dir = str(tmp_path / 'w')
    assert tool.main([SEARCH_XS, '--work-dir', work_dir, '--no-progress',
                      '--cfg-options', 'score.type=GradNormScore',
                      'score.image_size=16', 'score.frames=2',
                      'score.batch_size=2', 'search.num_candidates=30',
                      'search.population_size=4']) == 0
    log = open(osp.join(work_dir, 'search.log')).read()
    assert 'best GradNormScore ' in log
    assert 'GradNormScore: ' in log
    assert ' structures computed by this run, ' in log
    import json
    summary = json.load(open(osp.join(work_dir, 'search_summary.json')))
    best = load_structure(osp.join(work_dir, 'best_structure.json'))
    assert GradNormScore(16, 2, batch_size=2)(best) == summary['best_score']


def test_analyze_names_a_zoo_score(capsys):
    analyze = load_tool('analyze').main
    assert analyze(['E3D-XS', '--image-size', '40', '--frames', '8',
                    '--score-cfg', 'type=FlopsScore']) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        'FlopsScore: 15409152.0000000000')
    assert analyze(['E3D-XS', '--score-cfg', 'type=NASWOTScore',
                    'batch_size=1']) == 2
    assert capsys.readouterr().err == (
        'error: NASWOTScore: batch_size must be an integer in [2, 4096], '
        'got 1\n')
