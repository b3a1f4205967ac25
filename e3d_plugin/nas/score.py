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
integer division, applied before the block is scored and used by all of its
units; ``T`` is the clip length. A stage ends before every stride-2 block
(but the first) and at the last block; a stage's score is the sum over all
units from the stem to its end plus ``log(C_out)`` of its last block, and the
total is ``sum(stage_weights[i] * stage_score[i])``.
"""
import math
import random
import zlib

from ..registry import SCORES


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
            gives the plain 3D entropy (the paper's ablation).
    """

    def __init__(self, image_size=224, frames=16,
                 stage_weights=(0, 0, 0, 0, 1), refine=True):
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = tuple(int(v) for v in image_size)
        self.frames = int(frames)
        self.stage_weights = tuple(float(w) for w in stage_weights)
        self.refine = bool(refine)
        if self.frames < 1 or min(self.image_size) < 1:
            raise ValueError(
                'STEntrScore: frames and image_size must be positive, got '
                f'frames={frames}, image_size={image_size}')
        if not self.stage_weights:
            raise ValueError('STEntrScore: stage_weights must not be empty')
        self._log_alpha = {}

    def _half_log_alpha(self, height, width, kernel_t, kernel):
        key = (height, width, kernel_t, kernel)
        value = self._log_alpha.get(key)
        if value is None:
            if not self.refine or kernel == 1:
                value = 0.0
            elif height < 1 or width < 1:
                raise ValueError(
                    'STEntrScore: the feature map shrinks below 1 pixel; '
                    f'image_size {self.image_size} is too small for the '
                    'structure')
            else:
                alpha = refinement_factor(self.frames, height, width,
                                          kernel_t, kernel)
                value = 0.5 * math.log(alpha)
            self._log_alpha[key] = value
        return value

    def stage_scores(self, structure):
        """Score of every stage (unweighted)."""
        log = math.log
        height, width = self.image_size
        running = 0.0
        scores = []
        last = len(structure) - 1
        for index, block in enumerate(structure):
            kind, cin, cout, k, kt, s, depth, btn = block[:8]
            if s == 2 and index > 0:
                scores.append(running + log(block.in_channels))
            height //= s
            width //= s
            half_alpha = self._half_log_alpha(height, width, kt, k)
            half_kk = 0.5 * log(kt * k * k)
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
                raise ValueError(f'STEntrScore: unknown block kind {kind!r}')
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
        return sum(w * s for w, s in zip(self.stage_weights, scores) if w)

    def __repr__(self):
        return (f'STEntrScore(image_size={self.image_size}, frames='
                f'{self.frames}, stage_weights={self.stage_weights}, refine='
                f'{self.refine})')


@SCORES.register_module()
class RandomScore:
    """A score that ignores the structure: the baseline of a random search.

    The value is a pure function of the structure and ``seed``, so a search
    driven by it is reproducible.
    """

    def __init__(self, seed=0, **kwargs):
        self.seed = int(seed)

    def __call__(self, structure):
        """A uniform number in [0, 1) tied to ``structure``."""
        key = zlib.crc32(repr(tuple(structure)).encode())
        return random.Random(self.seed * 4294967296 + key).random()
