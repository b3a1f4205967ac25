"""Training-free scores of a structure: STEntr-Score and a random baseline.

STEntr-Score (Wang et al., ICLR 2023). With Gaussian weights the entropy of a
conv's output grows with ``log(C_in * Kt * K * K)``; a refinement factor

    ``alpha = -log(1 - cos((T, H, W), (Kt, K, K)))``  (``alpha = 1`` if K = 1)

weighs how well the kernel shape matches the feature-map shape (``1 - cos``
is floored at ``ALIGNMENT_FLOOR`` so that a kernel exactly parallel to the
feature map scores finitely). Each conv
layer contributes ``log(sqrt(C_in * Kt * K^2 * alpha))`` with ``C_in`` the
input width of one group: ``btn``/``dwbtn`` units contribute
``log(sqrt(C_in)) + log(sqrt(C_mid * Kt * K^2 * alpha)) + log(sqrt(C_btn))``
with ``C_mid = C_btn`` for ``btn`` and 1 for the depthwise ``dwbtn``; a
``res`` unit's two convs count as plain convs. SE modules add nothing.

``(H, W)`` is a block's output size, the input divided by its stride with
integer division (:func:`~e3d_plugin.units.score_output_size`), applied
before the block is scored and used by all of its units; ``T`` is the clip
length. The backbone rounds up instead
(:func:`~e3d_plugin.units.conv_output_size`); the score keeps the floor on
purpose, because the published reference scores need it. A stage ends
before every stride-2 block (but the first) and at the last block; a
stage's score is the sum over all units from the stem to its end plus
``log(C_out)`` of its last block, and the total is
``sum(stage_weights[i] * stage_score[i])``.

``temporal_coverage=True`` (an option, off by default: the published
values are those without it) multiplies the total by ``min(R, T) / T``,
the share of the clip that one output position sees, with ``R`` the
structure's temporal receptive field
(:func:`~e3d_plugin.units.temporal_receptive_field`). It has no free
parameter: a structure that sees the whole clip keeps its score, a
motion-blind one (``R = 1``) keeps ``1 / T`` of it.
"""
import math
import random
import zlib

from ..checks import (check_bool, check_int, check_list, check_number,
                      image_hw)
from ..registry import SCORES
from ..units import KINDS, score_output_size, temporal_receptive_field


#: Smallest ``1 - cos`` used in ``alpha`` (caps alpha at about 27.6).
ALIGNMENT_FLOOR = 1e-12


def refinement_factor(frames, height, width, kernel_t, kernel):
    """``alpha`` of a ``(kernel_t, kernel, kernel)`` conv on ``(T, H, W)``."""
    if kernel == 1:
        return 1.0
    feature = (frames, height, width)
    kernel_shape = (kernel_t, kernel, kernel)
    dot = sum(a * b for a, b in zip(feature, kernel_shape))
    norms = math.sqrt(sum(a * a for a in feature)) * math.sqrt(
        sum(b * b for b in kernel_shape))
    # A kernel exactly parallel to the feature map (e.g. 3x3x3 on 8x8x8)
    # makes 1 - cos zero and alpha infinite; the floor keeps it finite.
    return -math.log(max(1.0 - dot / norms, ALIGNMENT_FLOOR))


@SCORES.register_module()
class STEntrScore:
    """Spatio-temporal entropy score of a structure (higher is better).

    Args:
        image_size (int | tuple[int, int]): Clip height and width.
        frames (int): Clip length ``T``.
        stage_weights (Sequence[float]): Weight of each stage's score; its
            length must equal the structure's number of stages. The default
            counts only the last of 5 stages, as the published E3D searches.
        refine (bool): Apply the spatio-temporal refinement factor; False
            gives the plain 3D entropy (the paper's ablation). Must be
            ``True`` or ``False``: the string ``'false'`` is refused, not
            read as True.
        temporal_coverage (bool): Multiply the score by the share of the
            clip one output position sees, ``min(R, T) / T`` (see the
            module docstring). Defaults to False (the published score).

    Every argument is checked; a wrong type or value raises ValueError
    naming the argument and what it accepts.
    """

    def __init__(self, image_size=224, frames=16,
                 stage_weights=(0, 0, 0, 0, 1), refine=True,
                 temporal_coverage=False):
        name = type(self).__name__
        self.image_size = image_hw(image_size, name)
        self.frames = check_int(name, 'frames', frames, low=1)
        self.stage_weights = check_list(
            name, 'stage_weights', stage_weights,
            lambda w: check_number(name, 'stage_weights', w),
            'finite numbers, one per stage')
        if not any(self.stage_weights):
            raise ValueError(
                f'{name}: stage_weights must have a non-zero weight, got '
                f'{list(self.stage_weights)}; every structure would score 0')
        self.refine = check_bool(name, 'refine', refine)
        self.temporal_coverage = check_bool(name, 'temporal_coverage',
                                            temporal_coverage)
        # (height, width, stride, kt, k) -> (out height, out width,
        # 0.5 * log(kt * k * k), 0.5 * log(alpha))
        self._blocks = {}

    def _kernel_term(self, height, width, stride, kernel_t, kernel):
        # The floor division of score_output_size is deliberate (the
        # published reference scores need it); see its docstring.
        height = score_output_size(height, stride)
        width = score_output_size(width, stride)
        half_alpha = 0.0
        if self.refine and kernel != 1:
            if height < 1 or width < 1:
                raise ValueError(
                    'STEntrScore: the feature map shrinks below 1 pixel; '
                    f'image_size {self.image_size} is too small for the '
                    'structure')
            half_alpha = 0.5 * math.log(refinement_factor(
                self.frames, height, width, kernel_t, kernel))
        return (height, width, 0.5 * math.log(kernel_t * kernel * kernel),
                half_alpha)

    def stage_scores(self, structure):
        """Score of every stage (unweighted)."""
        log = math.log
        height, width = self.image_size
        memo = self._blocks
        running = 0.0
        scores = []
        last = len(structure) - 1
        for index, block in enumerate(structure):
            # Unpacked at once: as fast as a slice, faster than 8 reads by
            # name (this loop runs once per candidate of a search).
            kind, cin, cout, k, kt, s, depth, btn, _, _ = block
            if s == 2 and index > 0:
                scores.append(running + log(cin))
            key = (height, width, s, kt, k)
            found = memo.get(key)
            if found is None:
                found = memo[key] = self._kernel_term(height, width, s, kt,
                                                      k)
            height, width, half_kk, half_alpha = found
            if kind == 'conv':
                first = 0.5 * log(cin) + half_kk + half_alpha
                rest = 0.5 * log(cout) + half_kk + half_alpha
            elif kind == 'dwbtn':
                shared = half_kk + half_alpha + 0.5 * log(btn)
                first = 0.5 * log(cin) + shared
                rest = 0.5 * log(cout) + shared
            elif kind == 'btn':
                shared = 0.5 * log(btn) + half_kk + half_alpha + 0.5 * log(btn)
                first = 0.5 * log(cin) + shared
                rest = 0.5 * log(cout) + shared
            elif kind == 'res':
                shared = 0.5 * log(cout) + 2 * (half_kk + half_alpha)
                first = 0.5 * log(cin) + shared
                rest = 0.5 * log(cout) + shared
            else:
                raise ValueError(
                    f'STEntrScore: unknown block kind {kind!r}; the score '
                    f'knows {", ".join(KINDS)}')
            running += first + (depth - 1) * rest
            if index == last:
                scores.append(running + log(cout))
        return scores

    def __call__(self, structure):
        """The weighted score of ``structure``."""
        scores = self.stage_scores(structure)
        if len(scores) != len(self.stage_weights):
            raise ValueError(
                f'STEntrScore: the structure has {len(scores)} stages (a '
                'stage ends before each stride-2 block) but stage_weights has '
                f'{len(self.stage_weights)} entries; give one weight per '
                'stage')
        total = sum(w * s for w, s in zip(self.stage_weights, scores) if w)
        if self.temporal_coverage:
            seen = min(temporal_receptive_field(structure), self.frames)
            total *= seen / self.frames
        return total

    def settings(self):
        """The arguments of the score, JSON-ready (to compare a search
        checkpoint's score with the configured one)."""
        return dict(image_size=list(self.image_size), frames=self.frames,
                    stage_weights=list(self.stage_weights),
                    refine=self.refine,
                    # recorded only when set: checkpoints from before the
                    # option still match
                    **(dict(temporal_coverage=True)
                       if self.temporal_coverage else {}))

    def __repr__(self):
        return (f'STEntrScore(image_size={self.image_size}, frames='
                f'{self.frames}, stage_weights={self.stage_weights}, refine='
                f'{self.refine}'
                + (', temporal_coverage=True' if self.temporal_coverage
                   else '') + ')')


@SCORES.register_module()
class RandomScore:
    """A score that ignores the structure: the baseline of a random search.

    The value is a pure function of the structure and ``seed`` (an int), so
    a search driven by it is reproducible. The arguments of
    :class:`STEntrScore` (``image_size``, ``frames``, ``stage_weights``,
    ``refine``) are accepted and ignored, so that a config can swap the
    score's ``type`` alone; any other argument is refused.
    """

    #: Arguments accepted and ignored (those of STEntrScore).
    IGNORED = ('image_size', 'frames', 'stage_weights', 'refine')

    def __init__(self, seed=0, **kwargs):
        self.seed = check_int('RandomScore', 'seed', seed)
        unknown = sorted(str(k) for k in kwargs if k not in self.IGNORED)
        if unknown:
            raise ValueError(
                f"RandomScore: unknown argument '{unknown[0]}'; it takes seed "
                f'(and ignores {", ".join(self.IGNORED)})')

    def __call__(self, structure):
        """A uniform number in [0, 1) tied to ``structure``."""
        key = zlib.crc32(repr(tuple(structure)).encode())
        return random.Random(self.seed * 4294967296 + key).random()

    def settings(self):
        """The arguments of the score, JSON-ready."""
        return dict(seed=self.seed)

    def __repr__(self):
        return f'RandomScore(seed={self.seed})'
