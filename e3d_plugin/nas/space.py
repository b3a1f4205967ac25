"""The E3D search space: random sampling, mutation and crossover of a
:class:`~e3d_plugin.structure.Structure`.

A structure of the space keeps the skeleton of the structure the search
starts from: the number of blocks and their strides never change, the first
block (the stem) only changes its width, and the last block (the final 1x1x1
conv that feeds the head) is kept as it is. Every block in between (a *body*
block) may change its

* output width, by a multiplier from ``width_multipliers`` rounded to a
  multiple of ``width_divisor``;
* kernel ``(kt, k)``, one of ``kernels``;
* bottleneck width, ``out`` times a ratio from ``bottleneck_ratios``;
* depth, by a step from ``depth_steps``;
* kind, one of ``kinds``.

Every structure the space returns obeys these rules, by construction (no
candidate is generated and then thrown away):

* the channel chain holds (``in`` of a block is ``out`` of the one before);
* widths never decrease along the network and no width exceeds
  ``max_width`` (the stem: ``max_stem_width``);
* the first body block has at most ``max_first_depth`` units, every body
  block at most ``max_depth`` (when set);
* a kernel fits the feature map: ``kernel_margin * k`` is at most the
  block's input height and width, ``kernel_margin * kt`` at most the clip
  length.

:meth:`E3DSearchSpace.check` lists the rules a structure breaks; the search
uses it once, on the structure it starts from.

Nothing here builds a module or imports torch: a mutation is a handful of
tuple operations, a few microseconds.
"""
from ..registry import SEARCH_SPACES
from ..structure import (BOTTLENECK_KINDS, KINDS, Block, Structure,
                         StructureError)

_new_block = tuple.__new__  # Block(...) without NamedTuple's slow __new__


def _block(kind, cin, cout, k, kt, s, depth, btn, se, act):
    return _new_block(Block, (kind, cin, cout, k, kt, s, depth, btn, se, act))


def _structure(blocks):
    return _new_block(Structure, blocks)


class _Layout:
    """What the space allows at each position of one skeleton."""

    __slots__ = ('kernels', 'depth_caps', 'strides')

    def __init__(self, kernels, depth_caps, strides):
        self.kernels = kernels
        self.depth_caps = depth_caps
        self.strides = strides


@SEARCH_SPACES.register_module()
class E3DSearchSpace:
    """Mutations of an E3D structure under the constraints of the paper.

    Args:
        image_size (int | tuple[int, int]): Clip height and width; with
            ``frames`` it decides which kernels fit each block.
        frames (int): Clip length.
        kernels (Sequence[tuple[int, int]]): ``(kt, k)`` choices of a body
            block. Defaults to ``((1, 3), (1, 5), (3, 3))``, the published
            space; ``(3, 5)``, ``(5, 5)``, ``(1, 7)`` are examples of others.
        width_multipliers (Sequence[float]): Factors applied to a width.
        bottleneck_ratios (Sequence[float]): ``btn / out`` choices.
        depth_steps (Sequence[int]): Depth changes of one mutation.
        kinds (Sequence[str]): Kinds a body block may take.
        max_width (int): Widest output of any block.
        max_stem_width (int): Widest stem output.
        max_first_depth (int): Most units of the first body block.
        max_depth (int, optional): Most units of any body block; None for no
            cap (the layer budget of a search still applies).
        width_divisor (int): Widths and bottlenecks are multiples of it.
        kernel_margin (float): A kernel ``k`` needs an input of at least
            ``kernel_margin * k`` pixels (``kt``: frames).
        mutations_per_candidate (int): Block mutations applied to make one
            candidate.
    """

    #: Mutation kinds of a body block.
    METHODS = ('width', 'kernel', 'bottleneck', 'depth', 'kind')

    def __init__(self,
                 image_size=224,
                 frames=16,
                 kernels=((1, 3), (1, 5), (3, 3)),
                 width_multipliers=(2.0, 1.5, 1.25, 0.8, 0.6, 0.5),
                 bottleneck_ratios=(1.5, 2.0, 2.5, 3.0, 3.5, 4.0),
                 depth_steps=(-2, -1, 1, 2),
                 kinds=('dwbtn', ),
                 max_width=640,
                 max_stem_width=32,
                 max_first_depth=3,
                 max_depth=None,
                 width_divisor=8,
                 kernel_margin=1.5,
                 mutations_per_candidate=2):
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = tuple(int(v) for v in image_size)
        self.frames = int(frames)
        self.kernels = tuple(tuple(int(v) for v in kernel)
                             for kernel in kernels)
        self.width_multipliers = tuple(float(m) for m in width_multipliers)
        self.bottleneck_ratios = tuple(
            sorted(float(r) for r in bottleneck_ratios))
        self.depth_steps = tuple(int(s) for s in depth_steps)
        self.kinds = tuple(kinds)
        self.max_width = int(max_width)
        self.max_stem_width = int(max_stem_width)
        self.max_first_depth = int(max_first_depth)
        self.max_depth = None if max_depth is None else int(max_depth)
        self.width_divisor = int(width_divisor)
        self.kernel_margin = float(kernel_margin)
        self.mutations_per_candidate = int(mutations_per_candidate)
        self._check_args()
        self._layouts = {}

    def _check_args(self):
        def fail(message):
            raise ValueError(f'E3DSearchSpace: {message}')

        if self.frames < 1 or min(self.image_size) < 1:
            fail('image_size and frames must be positive')
        if not self.kernels:
            fail('kernels must not be empty')
        for kernel in self.kernels:
            if len(kernel) != 2 or any(v < 1 or v % 2 == 0 for v in kernel):
                fail(f'kernels: {kernel} is not a (kt, k) pair of odd '
                     'positive sizes')
        if not self.width_multipliers or any(
                m <= 0 for m in self.width_multipliers):
            fail('width_multipliers must be positive numbers')
        if not self.bottleneck_ratios or any(
                r <= 0 for r in self.bottleneck_ratios):
            fail('bottleneck_ratios must be positive numbers')
        if not self.depth_steps or 0 in self.depth_steps:
            fail('depth_steps must be non-zero integers')
        unknown = [k for k in self.kinds if k not in KINDS]
        if not self.kinds or unknown:
            fail(f"kinds must be some of {', '.join(KINDS)}, got "
                 f'{list(self.kinds)}')
        if self.width_divisor < 1:
            fail('width_divisor must be >= 1')
        if self.max_width < self.width_divisor or (
                self.max_stem_width < self.width_divisor):
            fail('max_width and max_stem_width must be at least '
                 'width_divisor')
        if self.max_first_depth < 1 or (self.max_depth is not None
                                        and self.max_depth < 1):
            fail('max_first_depth and max_depth must be >= 1')
        if self.mutations_per_candidate < 1:
            fail('mutations_per_candidate must be >= 1')

    # ------------------------------------------------------------------
    # helpers
    def round_width(self, value):
        """``value`` rounded to a multiple of ``width_divisor`` (at least
        one divisor)."""
        d = self.width_divisor
        return max(d, int(value / d + 0.5) * d)

    def _ratio(self, block):
        """The allowed bottleneck ratio nearest to ``btn / out``."""
        actual = block[7] / block[2]
        return min(self.bottleneck_ratios, key=lambda r: abs(r - actual))

    def _layout(self, structure):
        strides = tuple(block[5] for block in structure)
        layout = self._layouts.get(strides)
        if layout is None:
            layout = self._make_layout(strides)
            self._layouts[strides] = layout
        return layout

    def _make_layout(self, strides):
        height, width = self.image_size
        margin = self.kernel_margin
        kernels, caps = [], []
        last = len(strides) - 1
        for index, stride in enumerate(strides):
            fitting = tuple(
                (kt, k) for kt, k in self.kernels
                if margin * k <= min(height, width)
                and margin * kt <= self.frames)
            kernels.append(fitting)
            if index == 1:
                cap = self.max_first_depth
                if self.max_depth is not None:
                    cap = min(cap, self.max_depth)
            elif 0 < index < last:
                cap = self.max_depth
            else:
                cap = 1
            caps.append(cap)
            height = (height - 1) // stride + 1
            width = (width - 1) // stride + 1
        return _Layout(tuple(kernels), tuple(caps), strides)

    # ------------------------------------------------------------------
    def check(self, structure):
        """Rules of the space that ``structure`` breaks, as messages (an
        empty list when it belongs to the space)."""
        try:
            structure = Structure(structure).validate()
        except StructureError as e:
            return [str(e)]
        problems = []
        if len(structure) < 3:
            problems.append(
                f'the space needs a stem, at least one body block and a '
                f'final block; the structure has {len(structure)} blocks')
            return problems
        layout = self._layout(structure)
        last = len(structure) - 1
        previous = 0
        for index, block in enumerate(structure):
            where = f'block {index} ({block.kind})'
            if block.out_channels < previous:
                problems.append(
                    f'{where}: out {block.out_channels} is narrower than '
                    f'the {previous} channels before it; widths must never '
                    'decrease')
            previous = block.out_channels
            limit = self.max_stem_width if index == 0 else self.max_width
            if block.out_channels > limit:
                name = 'max_stem_width' if index == 0 else 'max_width'
                problems.append(
                    f'{where}: out {block.out_channels} exceeds {name} '
                    f'{limit}')
            if index in (0, last):
                continue
            if block.kind not in self.kinds:
                problems.append(
                    f"{where}: kind '{block.kind}' is not among the space's "
                    f'kinds {list(self.kinds)}')
            if (block.kernel_t, block.kernel) not in layout.kernels[index]:
                problems.append(
                    f'{where}: kernel (kt={block.kernel_t}, k={block.kernel}) '
                    'is not one of the kernels the space allows there '
                    f'{list(layout.kernels[index])}')
            cap = layout.depth_caps[index]
            if cap is not None and block.depth > cap:
                name = 'max_first_depth' if index == 1 else 'max_depth'
                problems.append(
                    f'{where}: L={block.depth} exceeds {name} {cap}')
        return problems

    # ------------------------------------------------------------------
    # mutation
    def _mutate_stem(self, blocks, rng):
        block = blocks[0]
        out = block[2]
        high = min(self.max_stem_width, blocks[1][2])
        options = []
        for m in self.width_multipliers:
            width = min(max(self.round_width(out * m), self.width_divisor),
                        high)
            if width != out:
                options.append(width)
        if not options:
            return False
        width = rng.choice(options)
        blocks[0] = _block(block[0], block[1], width, *block[3:])
        nxt = blocks[1]
        blocks[1] = _block(nxt[0], width, *nxt[2:])
        return True

    def _mutate_width(self, blocks, index, rng):
        block = blocks[index]
        kind, cin, out = block[0], block[1], block[2]
        high = min(self.max_width, blocks[index + 1][2])
        options = []
        for m in self.width_multipliers:
            width = min(max(self.round_width(out * m), cin), high)
            if width != out:
                options.append(width)
        if not options:
            return False
        width = rng.choice(options)
        btn = block[7]
        if kind in BOTTLENECK_KINDS:
            btn = self.round_width(width * self._ratio(block))
        blocks[index] = _block(kind, cin, width, block[3], block[4], block[5],
                               block[6], btn, block[8], block[9])
        nxt = blocks[index + 1]
        blocks[index + 1] = _block(nxt[0], width, *nxt[2:])
        return True

    def _mutate_kernel(self, blocks, index, layout, rng):
        block = blocks[index]
        current = (block[4], block[3])
        options = [kernel for kernel in layout.kernels[index]
                   if kernel != current]
        if not options:
            return False
        kt, k = rng.choice(options)
        blocks[index] = _block(block[0], block[1], block[2], k, kt, block[5],
                               block[6], block[7], block[8], block[9])
        return True

    def _mutate_bottleneck(self, blocks, index, rng):
        block = blocks[index]
        if block[0] not in BOTTLENECK_KINDS:
            return False
        out, btn = block[2], block[7]
        current = self._ratio(block)
        options = []
        for ratio in self.bottleneck_ratios:
            if ratio == current:
                continue
            width = self.round_width(out * ratio)
            if width != btn:
                options.append(width)
        if not options:
            return False
        btn = rng.choice(options)
        blocks[index] = _block(block[0], block[1], out, block[3], block[4],
                               block[5], block[6], btn, block[8], block[9])
        return True

    def _mutate_depth(self, blocks, index, layout, rng):
        block = blocks[index]
        depth = block[6]
        cap = layout.depth_caps[index]
        options = []
        for step in self.depth_steps:
            new = depth + step
            if new < 1:
                new = 1
            if cap is not None and new > cap:
                new = cap
            if new != depth:
                options.append(new)
        if not options:
            return False
        depth = rng.choice(options)
        blocks[index] = _block(block[0], block[1], block[2], block[3],
                               block[4], block[5], depth, block[7], block[8],
                               block[9])
        return True

    def _mutate_kind(self, blocks, index, rng):
        block = blocks[index]
        options = [kind for kind in self.kinds if kind != block[0]]
        if not options:
            return False
        kind = rng.choice(options)
        if kind in BOTTLENECK_KINDS:
            if block[0] in BOTTLENECK_KINDS:
                btn = block[7]
            else:
                btn = self.round_width(block[2] *
                                       rng.choice(self.bottleneck_ratios))
        else:
            btn = 0
        blocks[index] = _block(kind, block[1], block[2], block[3], block[4],
                               block[5], block[6], btn, block[8], block[9])
        return True

    def _mutate_once(self, blocks, layout, rng):
        """Apply one block mutation to the list ``blocks`` in place."""
        last = len(blocks) - 1
        # A drawn mutation can be a no-op (e.g. a width already at its
        # bound); draw again, a bounded number of times.
        for _ in range(64):
            index = rng.randrange(last)
            if index == 0:
                if self._mutate_stem(blocks, rng):
                    return True
                continue
            method = rng.choice(self.METHODS)
            if method == 'width':
                done = self._mutate_width(blocks, index, rng)
            elif method == 'kernel':
                done = self._mutate_kernel(blocks, index, layout, rng)
            elif method == 'bottleneck':
                done = self._mutate_bottleneck(blocks, index, rng)
            elif method == 'depth':
                done = self._mutate_depth(blocks, index, layout, rng)
            else:
                done = self._mutate_kind(blocks, index, rng)
            if done:
                return True
        return False

    def mutate(self, structure, rng, num_mutations=None):
        """A mutant of ``structure``: ``num_mutations`` (default
        ``mutations_per_candidate``) block mutations drawn with ``rng`` (a
        :class:`random.Random`)."""
        layout = self._layout(structure)
        blocks = list(structure)
        for _ in range(num_mutations or self.mutations_per_candidate):
            self._mutate_once(blocks, layout, rng)
        return _structure(blocks)

    # ------------------------------------------------------------------
    def crossover(self, first, second, rng):
        """A child taking each block from ``first`` or ``second`` (same
        skeleton), with widths raised where needed so that they never
        decrease."""
        if len(first) != len(second) or any(
                a[5] != b[5] for a, b in zip(first, second)):
            raise ValueError(
                'crossover needs two structures of the same skeleton (number '
                'of blocks and strides)')
        bits = rng.getrandbits(len(first))
        blocks = []
        previous = None
        for index, (a, b) in enumerate(zip(first, second)):
            block = b if (bits >> index) & 1 else a
            if previous is not None:
                kind, cin, out = block[0], block[1], block[2]
                btn = block[7]
                if out < previous:
                    # The raised width keeps the block's bottleneck ratio.
                    if kind in BOTTLENECK_KINDS:
                        btn = self.round_width(previous * btn / out)
                    out = previous
                if cin != previous or out != block[2]:
                    block = _block(kind, previous, out, block[3], block[4],
                                   block[5], block[6], btn, block[8],
                                   block[9])
            blocks.append(block)
            previous = block[2]
        return _structure(blocks)

    # ------------------------------------------------------------------
    def sample(self, template, rng):
        """A random structure of the space with the skeleton of
        ``template``: widths near the template's (one random multiplier
        each), random kernels, ratios, depths and kinds."""
        layout = self._layout(template)
        last = len(template) - 1
        blocks = []
        previous = None
        for index, block in enumerate(template):
            kind, cin, out, k, kt, s, depth, btn, se, act = block
            if previous is not None:
                cin = previous
            if index == 0:
                high = min(self.max_stem_width, template[1][2])
                out = min(self.round_width(out * rng.choice(
                    self.width_multipliers)), high)
            elif index < last:
                high = min(self.max_width, template[last][2])
                out = min(max(self.round_width(
                    out * rng.choice(self.width_multipliers)), cin), high)
                kt, k = rng.choice(layout.kernels[index])
                kind = rng.choice(self.kinds)
                cap = layout.depth_caps[index]
                if cap is None:
                    cap = depth + max(max(self.depth_steps), 0)
                depth = rng.randint(1, max(1, cap))
                btn = self.round_width(out * rng.choice(
                    self.bottleneck_ratios)) if kind in BOTTLENECK_KINDS else 0
            block = _block(kind, cin, out, k, kt, s, depth, btn, se, act)
            blocks.append(block)
            previous = out
        return _structure(blocks)

    def __repr__(self):
        return (f'E3DSearchSpace(image_size={self.image_size}, frames='
                f'{self.frames}, kernels={list(self.kernels)}, '
                f'width_multipliers={list(self.width_multipliers)}, '
                f'bottleneck_ratios={list(self.bottleneck_ratios)}, '
                f'depth_steps={list(self.depth_steps)}, kinds='
                f'{list(self.kinds)}, max_width={self.max_width}, '
                f'max_stem_width={self.max_stem_width}, max_first_depth='
                f'{self.max_first_depth}, max_depth={self.max_depth}, '
                f'width_divisor={self.width_divisor}, kernel_margin='
                f'{self.kernel_margin}, mutations_per_candidate='
                f'{self.mutations_per_candidate})')

    def settings(self):
        """The arguments of the space, JSON-ready (to compare a checkpoint's
        space with the configured one)."""
        return dict(
            image_size=list(self.image_size),
            frames=self.frames,
            kernels=[list(k) for k in self.kernels],
            width_multipliers=list(self.width_multipliers),
            bottleneck_ratios=list(self.bottleneck_ratios),
            depth_steps=list(self.depth_steps),
            kinds=list(self.kinds),
            max_width=self.max_width,
            max_stem_width=self.max_stem_width,
            max_first_depth=self.max_first_depth,
            max_depth=self.max_depth,
            width_divisor=self.width_divisor,
            kernel_margin=self.kernel_margin,
            mutations_per_candidate=self.mutations_per_candidate)

