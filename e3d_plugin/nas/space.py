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
  length (input sizes from :func:`~e3d_plugin.units.iter_units`, the walk
  the cost model and the latency table use).

With ``min_temporal_rf`` above 1 (off by default), the space also refuses
motion-blind structures: every structure it returns sees at least
``min_temporal_rf`` frames (:func:`~e3d_plugin.units.temporal_receptive_field`).
Sampling draws again (a bounded number of times) and mutation mutates the
parent again when a result falls short; what still falls short is repaired
by raising the temporal kernel of random body blocks to one that fits
there. With the option off nothing of this runs, and every draw of the
random generator is as before.

:meth:`E3DSearchSpace.check` lists the rules a structure breaks; the search
uses it once, on the structure it starts from.

Nothing here builds a module or imports torch: a mutation is a handful of
tuple operations, a few microseconds. Blocks are read by field name; new
blocks are made positionally in :class:`~e3d_plugin.structure.Block` field
order, skipping NamedTuple's slow keyword ``__new__``.
"""
from ..checks import check_int, check_list, check_number, image_hw, is_int
from ..registry import SEARCH_SPACES
from ..structure import (MAX_DEPTH, MAX_KERNEL, MAX_WIDTH, Block, Structure,
                         StructureError)
from ..units import (BOTTLENECK_KINDS, KINDS, iter_units,
                     temporal_receptive_field)

_new_block = tuple.__new__  # Block(...) without NamedTuple's slow __new__

#: Largest ``min_temporal_rf`` accepted (far beyond any clip).
MAX_TEMPORAL_RF = 4096
#: Draws of :meth:`E3DSearchSpace.sample` (mutations of ``mutate``) before a
#: result short of ``min_temporal_rf`` is repaired instead.
TEMPORAL_RETRIES = 16


def _block(kind, cin, cout, k, kt, s, depth, btn, se, act):
    """A :class:`Block` from its fields in order (no keyword parsing)."""
    return _new_block(Block, (kind, cin, cout, k, kt, s, depth, btn, se, act))


def _with_input(block, cin):
    """``block`` with input width ``cin``."""
    kind, _, out, k, kt, s, depth, btn, se, act = block
    return _new_block(Block, (kind, cin, out, k, kt, s, depth, btn, se, act))


def _structure(blocks):
    """A :class:`Structure` of ``blocks`` (already valid by construction)."""
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
        min_temporal_rf (int): Fewest frames the temporal receptive field
            of a structure may cover (1, the default: no limit; 2: no
            motion-blind structure, i.e. at least one temporal kernel).

    Every argument is checked: a wrong type (a number where a list belongs,
    a string where a number belongs, ``True`` for ``1``) or value (NaN,
    infinity, an even kernel, a zero depth step) raises ValueError naming
    the argument and what it accepts.
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
                 mutations_per_candidate=2,
                 min_temporal_rf=1):
        self._check_args(dict(
            image_size=image_size, frames=frames, kernels=kernels,
            width_multipliers=width_multipliers,
            bottleneck_ratios=bottleneck_ratios, depth_steps=depth_steps,
            kinds=kinds, max_width=max_width, max_stem_width=max_stem_width,
            max_first_depth=max_first_depth, max_depth=max_depth,
            width_divisor=width_divisor, kernel_margin=kernel_margin,
            mutations_per_candidate=mutations_per_candidate,
            min_temporal_rf=min_temporal_rf))
        self._layouts = {}

    def _check_args(self, args):
        """Check and store every argument (ValueError naming the first bad
        one and what it accepts)."""
        name = type(self).__name__

        def kernel(value):
            if not isinstance(value, (list, tuple)) or len(value) != 2 or any(
                    not is_int(v) or not 1 <= v <= MAX_KERNEL or v % 2 == 0
                    for v in value):
                raise ValueError(value)
            return int(value[0]), int(value[1])

        def kind(value):
            if not isinstance(value, str) or value not in KINDS:
                raise ValueError(value)
            return value

        def nonzero_int(value):
            if check_int(name, 'depth_steps', value) == 0:
                raise ValueError(value)
            return value

        self.image_size = image_hw(args['image_size'], name)
        self.frames = check_int(name, 'frames', args['frames'], low=1)
        self.kernels = check_list(
            name, 'kernels', args['kernels'], kernel,
            f'(kt, k) pairs of odd integers in 1..{MAX_KERNEL}')
        self.width_multipliers = check_list(
            name, 'width_multipliers', args['width_multipliers'],
            lambda m: check_number(name, 'width_multipliers', m,
                                   positive=True),
            'finite positive numbers')
        self.bottleneck_ratios = tuple(sorted(check_list(
            name, 'bottleneck_ratios', args['bottleneck_ratios'],
            lambda r: check_number(name, 'bottleneck_ratios', r,
                                   positive=True),
            'finite positive numbers')))
        self.depth_steps = check_list(name, 'depth_steps',
                                      args['depth_steps'], nonzero_int,
                                      'non-zero integers')
        self.kinds = check_list(name, 'kinds', args['kinds'], kind,
                                f'block kinds ({", ".join(KINDS)})')
        self.width_divisor = check_int(name, 'width_divisor',
                                       args['width_divisor'], low=1)
        self.max_width = check_int(name, 'max_width', args['max_width'],
                                   low=self.width_divisor, high=MAX_WIDTH)
        self.max_stem_width = check_int(name, 'max_stem_width',
                                        args['max_stem_width'],
                                        low=self.width_divisor,
                                        high=MAX_WIDTH)
        self.max_first_depth = check_int(name, 'max_first_depth',
                                         args['max_first_depth'], low=1,
                                         high=MAX_DEPTH)
        self.max_depth = check_int(name, 'max_depth', args['max_depth'],
                                   low=1, high=MAX_DEPTH, allow_none=True)
        self.kernel_margin = check_number(name, 'kernel_margin',
                                          args['kernel_margin'],
                                          positive=True)
        self.mutations_per_candidate = check_int(
            name, 'mutations_per_candidate', args['mutations_per_candidate'],
            low=1)
        self.min_temporal_rf = check_int(name, 'min_temporal_rf',
                                         args['min_temporal_rf'], low=1,
                                         high=MAX_TEMPORAL_RF)
        if self.min_temporal_rf > 1 and all(kt == 1 for kt, _ in
                                            self.kernels):
            raise ValueError(
                f'{name}: min_temporal_rf {self.min_temporal_rf} needs a '
                'temporal kernel (kt > 1) among kernels, got '
                f'{[list(k) for k in self.kernels]}')

    # ------------------------------------------------------------------
    # helpers
    def round_width(self, value):
        """``value`` rounded to a multiple of ``width_divisor`` (at least
        one divisor)."""
        d = self.width_divisor
        return max(d, int(value / d + 0.5) * d)

    def _ratio(self, block):
        """The allowed bottleneck ratio nearest to ``btn / out``."""
        actual = block.bottleneck / block.out_channels
        return min(self.bottleneck_ratios, key=lambda r: abs(r - actual))

    def _layout(self, structure):
        """The layout of ``structure``'s skeleton (memoised by strides, the
        only fields it depends on)."""
        strides = tuple(block.stride for block in structure)
        layout = self._layouts.get(strides)
        if layout is None:
            layout = self._make_layout(structure, strides)
            self._layouts[strides] = layout
        return layout

    def _make_layout(self, structure, strides):
        margin = self.kernel_margin
        kernels, caps = [], []
        last = len(strides) - 1
        inputs = [unit.in_size for unit in iter_units(
            structure, self.image_size, self.frames) if unit.unit_index == 0]
        for index, (frames, height, width) in enumerate(inputs):
            fitting = tuple(
                (kt, k) for kt, k in self.kernels
                if margin * k <= min(height, width)
                and margin * kt <= frames)
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
        field = temporal_receptive_field(structure)
        if field < self.min_temporal_rf:
            problems.append(
                f'the temporal receptive field is {field} frame'
                f'{"" if field == 1 else "s"}, below min_temporal_rf '
                f'{self.min_temporal_rf} (a structure needs temporal kernels '
                '(kt > 1) to see motion)')
        return problems

    # ------------------------------------------------------------------
    # the temporal receptive field
    def _short(self, structure):
        """Whether ``structure`` sees fewer frames than it must."""
        return (self.min_temporal_rf > 1 and temporal_receptive_field(
            structure) < self.min_temporal_rf)

    def _widen(self, structure, layout, rng):
        """``structure`` with the temporal kernels of random body blocks
        raised (to a kernel of the space that fits there) until it sees
        ``min_temporal_rf`` frames; None when no such change reaches it."""
        blocks = list(structure)
        last = len(blocks) - 1
        while temporal_receptive_field(blocks) < self.min_temporal_rf:
            options = [index for index in range(1, last) if any(
                kt > blocks[index].kernel_t
                for kt, _ in layout.kernels[index])]
            if not options:
                return None
            index = rng.choice(options)
            kind, cin, out, k, kt, s, depth, btn, se, act = blocks[index]
            kt, k = rng.choice([kernel for kernel in layout.kernels[index]
                                if kernel[0] > kt])
            blocks[index] = _block(kind, cin, out, k, kt, s, depth, btn, se,
                                   act)
        return _structure(blocks)

    # ------------------------------------------------------------------
    # mutation
    def _mutate_stem(self, blocks, rng):
        kind, cin, out, k, kt, s, depth, btn, se, act = blocks[0]
        high = min(self.max_stem_width, blocks[1].out_channels)
        options = []
        for m in self.width_multipliers:
            width = min(max(self.round_width(out * m), self.width_divisor),
                        high)
            if width != out:
                options.append(width)
        if not options:
            return False
        width = rng.choice(options)
        blocks[0] = _block(kind, cin, width, k, kt, s, depth, btn, se, act)
        blocks[1] = _with_input(blocks[1], width)
        return True

    def _mutate_width(self, blocks, index, rng):
        block = blocks[index]
        kind, cin, out, k, kt, s, depth, btn, se, act = block
        high = min(self.max_width, blocks[index + 1].out_channels)
        options = []
        for m in self.width_multipliers:
            width = min(max(self.round_width(out * m), cin), high)
            if width != out:
                options.append(width)
        if not options:
            return False
        width = rng.choice(options)
        if kind in BOTTLENECK_KINDS:
            btn = self.round_width(width * self._ratio(block))
        blocks[index] = _block(kind, cin, width, k, kt, s, depth, btn, se,
                               act)
        blocks[index + 1] = _with_input(blocks[index + 1], width)
        return True

    def _mutate_kernel(self, blocks, index, layout, rng):
        kind, cin, out, k, kt, s, depth, btn, se, act = blocks[index]
        options = [kernel for kernel in layout.kernels[index]
                   if kernel != (kt, k)]
        if not options:
            return False
        kt, k = rng.choice(options)
        blocks[index] = _block(kind, cin, out, k, kt, s, depth, btn, se, act)
        return True

    def _mutate_bottleneck(self, blocks, index, rng):
        block = blocks[index]
        kind, cin, out, k, kt, s, depth, btn, se, act = block
        if kind not in BOTTLENECK_KINDS:
            return False
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
        blocks[index] = _block(kind, cin, out, k, kt, s, depth, btn, se, act)
        return True

    def _mutate_depth(self, blocks, index, layout, rng):
        kind, cin, out, k, kt, s, depth, btn, se, act = blocks[index]
        cap = layout.depth_caps[index]
        if cap is None:
            cap = MAX_DEPTH  # no max_depth: a structure file's limit
        options = []
        for step in self.depth_steps:
            new = min(max(depth + step, 1), cap)
            if new != depth:
                options.append(new)
        if not options:
            return False
        depth = rng.choice(options)
        blocks[index] = _block(kind, cin, out, k, kt, s, depth, btn, se, act)
        return True

    def _mutate_kind(self, blocks, index, rng):
        old, cin, out, k, kt, s, depth, btn, se, act = blocks[index]
        options = [kind for kind in self.kinds if kind != old]
        if not options:
            return False
        kind = rng.choice(options)
        if kind in BOTTLENECK_KINDS:
            if old not in BOTTLENECK_KINDS:
                btn = self.round_width(out *
                                       rng.choice(self.bottleneck_ratios))
        else:
            btn = 0
        blocks[index] = _block(kind, cin, out, k, kt, s, depth, btn, se, act)
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
        for _ in range(TEMPORAL_RETRIES if self.min_temporal_rf > 1 else 1):
            blocks = list(structure)
            for _ in range(num_mutations or self.mutations_per_candidate):
                self._mutate_once(blocks, layout, rng)
            child = _structure(blocks)
            if not self._short(child):
                return child
        # a parent short of the limit itself (e.g. a start structure from
        # before the option) or only short children: repair the last one
        return self._widen(child, layout, rng) or structure

    # ------------------------------------------------------------------
    def crossover(self, first, second, rng):
        """A child taking each block from ``first`` or ``second`` (same
        skeleton), with widths raised where needed so that they never
        decrease."""
        if len(first) != len(second) or any(
                a.stride != b.stride for a, b in zip(first, second)):
            raise ValueError(
                'crossover needs two structures of the same skeleton (number '
                'of blocks and strides)')
        bits = rng.getrandbits(len(first))
        blocks = []
        previous = None
        for index, (a, b) in enumerate(zip(first, second)):
            block = b if (bits >> index) & 1 else a
            if previous is not None:
                kind, cin, out, k, kt, s, depth, btn, se, act = block
                if out < previous:
                    # The raised width keeps the block's bottleneck ratio.
                    if kind in BOTTLENECK_KINDS:
                        btn = self.round_width(previous * btn / out)
                    out = previous
                if cin != previous or out != block.out_channels:
                    block = _block(kind, previous, out, k, kt, s, depth, btn,
                                   se, act)
            blocks.append(block)
            previous = block.out_channels
        child = _structure(blocks)
        if self._short(child):
            return self._widen(child, self._layout(child), rng) or first
        return child

    # ------------------------------------------------------------------
    def sample(self, template, rng):
        """A random structure of the space with the skeleton of
        ``template``: widths near the template's (one random multiplier
        each), random kernels, ratios, depths and kinds.

        With ``min_temporal_rf`` set, a draw that sees too few frames is
        drawn again (up to ``TEMPORAL_RETRIES`` times, so that sampling
        stays uniform over the structures that qualify), then repaired;
        ValueError when no structure of the skeleton can qualify."""
        layout = self._layout(template)
        for _ in range(TEMPORAL_RETRIES if self.min_temporal_rf > 1 else 1):
            structure = self._sample_once(template, layout, rng)
            if not self._short(structure):
                return structure
        widened = self._widen(structure, layout, rng)
        if widened is None:
            raise ValueError(
                f'E3DSearchSpace: min_temporal_rf {self.min_temporal_rf} '
                'cannot be reached: even with the widest temporal kernel the '
                'space allows in every body block, a structure of this '
                f'skeleton sees fewer frames (kernels {list(self.kernels)}, '
                f'{self.frames} frames)')
        return widened

    def _sample_once(self, template, layout, rng):
        last = len(template) - 1
        blocks = []
        previous = None
        for index, block in enumerate(template):
            kind, cin, out, k, kt, s, depth, btn, se, act = block
            if previous is not None:
                cin = previous
            if index == 0:
                high = min(self.max_stem_width, template[1].out_channels)
                out = min(self.round_width(out * rng.choice(
                    self.width_multipliers)), high)
            elif index < last:
                high = min(self.max_width, template[last].out_channels)
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
                f'{self.mutations_per_candidate}, min_temporal_rf='
                f'{self.min_temporal_rf})')

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
            mutations_per_candidate=self.mutations_per_candidate,
            # recorded only when set: checkpoints and study plans from
            # before the option still match a space without it
            **({} if self.min_temporal_rf == 1 else dict(
                min_temporal_rf=self.min_temporal_rf)))
