"""Draw the architectures of a rank study from a search config's space.

The sample has to answer one question well: does a higher STEntr-Score mean
a better trained network? So it

* spreads over the whole score range: a pool of structures (random samples
  of the space, structures met along mutation walks that climb toward the
  FLOPs budget, the search's own top structures) is sorted by score and cut
  into equal-count strata (score quantiles), one structure drawn from each;
* puts at least half of the sample in the *near-budget band* (FLOPs at least
  ``band`` times the FLOPs budget): over the whole range FLOPs and score rise
  together, while the search chooses among near-budget structures, so the
  band is where the score has to beat FLOPs;
* always holds the search's best structure and the structure the search
  starts from (when the start is over budget it cannot be trained at the
  budget; a note says so and it is left out).

Everything is drawn from one :class:`random.Random` seeded by ``seed``, so a
sample is reproducible.
"""
import math
import random

from ..cost import COST_FIELDS, cost_totals
from ..nas import build_search


class StudyError(ValueError):
    """A rank study cannot run as asked (an argument, a config, a file)."""


#: Budgets the sampler checks itself (a latency budget would time units).
SAMPLED_BUDGETS = ('flops', 'params', 'layers', 'max_feature',
                   'activation_bytes')


class SearchSetup:
    """What a rank study takes from a search config: the searcher (run once
    for its best structure), the space, the STEntr-Score, the starting
    structure, the budgets and the clip size of the cost (the fields of
    :class:`~e3d_plugin.nas.SearchBuild`)."""

    def __init__(self, searcher, space, score, init_structure, budgets,
                 image_size, frames):
        self.searcher = searcher
        self.space = space
        self.score = score
        self.init_structure = init_structure
        self.budgets = budgets
        self.image_size = image_size
        self.frames = frames


def build_searcher(cfg, num_candidates=None):
    """The :class:`SearchSetup` of a loaded search config: what
    :func:`~e3d_plugin.nas.build_search` builds (as ``tools/search.py``
    builds it), without a work dir or progress bar. A rank study measures
    STEntrScore and refuses a latency budget."""
    for key in ('init_structure', 'score', 'space', 'search'):
        if cfg.get(key) is None:
            raise StudyError(
                f"the search config is missing the required key '{key}'")
    for key in ('score', 'search'):
        if not isinstance(cfg.get(key), dict):
            raise StudyError(
                f'the search config\'s {key} must be a dict (a config with '
                f'a type), got {cfg.get(key)!r}')
    score = dict(cfg.score)
    if score.get('type', 'STEntrScore') not in ('STEntrScore',
                                                'e3d_plugin.STEntrScore'):
        raise StudyError(
            f"the search config's score is {score.get('type')!r}; a rank "
            'study measures STEntrScore, set score.type to STEntrScore')
    budgets = dict(cfg.search).get('budgets') or {}
    if not isinstance(budgets, dict):
        raise StudyError(
            "the search config's search.budgets must be a dict such as "
            f"dict(flops=4e7), got {budgets!r}")
    budgets = dict(budgets)
    if 'latency' in budgets:
        raise StudyError(
            'search.budgets.latency: a rank study samples thousands of '
            'structures and cannot time them all; use a search config with '
            'flops / params / layers / max_feature / activation_bytes '
            'budgets only')
    built = build_search(cfg, num_candidates=num_candidates, progress=False)
    return SearchSetup(**built._asdict())


class _Pool:
    """Distinct in-budget structures met so far, with cost and score."""

    def __init__(self, setup):
        self.setup = setup
        self.budgets = {k: v for k, v in setup.budgets.items()
                        if k in SAMPLED_BUDGETS}
        self.entries = {}

    def cost(self, structure):
        return dict(zip(COST_FIELDS, cost_totals(structure,
                                                self.setup.image_size,
                                                self.setup.frames)))

    def within(self, cost):
        return all(cost[k] <= v for k, v in self.budgets.items())

    def add(self, structure, cost=None):
        """Add ``structure`` if it is within budget; return its cost."""
        cost = cost or self.cost(structure)
        if structure not in self.entries and self.within(cost):
            self.entries[structure] = dict(
                structure=structure, cost=cost,
                score=float(self.setup.score(structure)))
        return cost


def _walk(pool, start, steps, rng):
    """A mutation walk from ``start`` that moves to in-budget children no
    cheaper than the current structure (or, one time in four, to any
    in-budget child), so it drifts toward the FLOPs budget and meets
    structures of many scores on the way."""
    space = pool.setup.space
    current, current_cost = start, pool.cost(start)
    for _ in range(steps):
        child = space.mutate(current, rng)
        cost = pool.add(child)
        if pool.within(cost) and (cost['flops'] >= current_cost['flops']
                                  or rng.random() < 0.25):
            current, current_cost = child, cost


def _shrunk_start(pool, rng, attempts=2000):
    """An in-budget relative of the start (for walks when the start itself
    is over budget), or None."""
    structure = pool.setup.init_structure
    budgets = pool.budgets

    def over(cost):
        return max((cost[k] / v for k, v in budgets.items()), default=0.0)

    best = (over(pool.cost(structure)), structure)
    for _ in range(attempts):
        if best[0] <= 1:
            return best[1]
        child = pool.setup.space.mutate(best[1], rng)
        ratio = over(pool.cost(child))
        if ratio < best[0]:
            best = (ratio, child)
    return best[1] if best[0] <= 1 else None


def _stratified(candidates, count, rng):
    """``count`` of ``candidates`` (sorted by score): one from each of
    ``count`` equal-count score strata; the lowest and highest strata give
    their extremes, so the picks span the group's score range."""
    n = len(candidates)
    picks = []
    for i in range(count):
        low, high = i * n // count, (i + 1) * n // count
        if i == 0:
            index = low
        elif i == count - 1:
            index = n - 1
        else:
            index = rng.randrange(low, high)
        picks.append(candidates[index])
    return picks


def sample_architectures(setup, num_archs, seed=0, band=0.8,
                         pool_size=None, walk_steps=40, band_share=0.5,
                         include_fixed=True):
    """Draw ``num_archs`` distinct in-budget structures for a rank study.

    Args:
        setup (SearchSetup): From :func:`build_searcher`; its searcher is
            run once to find the search's best structure.
        num_archs (int): Structures to draw (at least 3).
        seed (int): Seed of the draw.
        band (float): The near-budget band holds structures with FLOPs at
            least ``band`` times the FLOPs budget (the best structure's
            FLOPs when the search has no FLOPs budget).
        pool_size (int, optional): Random samples of the space in the pool;
            defaults to ``max(2000, 100 * num_archs)``.
        walk_steps (int): Steps of each mutation walk.
        band_share (float): The least share of the sample in the band
            (0.5: at least half; 1.0: all of it, as calibrating the band
            needs).
        include_fixed (bool): Always hold the search's best and the
            starting structure (every study holds them; a calibration
            leaves them out so that it shares no structure with the
            studies it calibrates).

    Returns:
        dict: ``archs`` (a list of dicts with ``id``, ``role`` - ``best``,
        ``start``, ``band`` or ``range`` -, ``in_band``, ``structure``,
        ``cost`` and ``score``, in ascending score order), ``band_flops``
        (the band's lower FLOPs bound), ``pool`` (the pool size), ``best``
        (the search's best score) and ``notes``.
    """
    if not isinstance(num_archs, int) or num_archs < 3:
        raise StudyError(
            f'--num-archs must be an integer >= 3 (a rank correlation needs '
            f'at least 3 architectures), got {num_archs!r}')
    rng = random.Random(seed)
    pool = _Pool(setup)
    notes = []
    result = setup.searcher.run()
    best = result['best_structure']
    pool.add(best)
    for entry in result['top_k']:
        pool.add(entry['structure'])
    start = setup.init_structure
    start_cost = pool.add(start)
    if not pool.within(start_cost):
        over = [k for k, v in pool.budgets.items() if start_cost[k] > v]
        amounts = ', '.join(f'{k} {start_cost[k]:.4g} > {pool.budgets[k]:.4g}'
                            for k in over)
        notes.append(
            f'the starting structure is over the {", ".join(over)} budget '
            f'({amounts}); it is not in the sample')
        start = None
    template = setup.init_structure
    for _ in range(pool_size or max(2000, 100 * num_archs)):
        pool.add(setup.space.sample(template, rng))
    walk_from = [start or _shrunk_start(pool, rng), best]
    randoms = sorted(pool.entries.values(), key=lambda e: e['score'])
    walk_from += [e['structure'] for e in _stratified(
        randoms, min(len(randoms), 8 + num_archs), rng)] if randoms else []
    for origin in walk_from:
        if origin is not None:
            _walk(pool, origin, walk_steps, rng)

    entries = list(pool.entries.values())
    if len(entries) < num_archs:
        raise StudyError(
            f'--num-archs {num_archs}: the space gives only {len(entries)} '
            f'distinct structures within the budgets {pool.budgets}; lower '
            '--num-archs or widen the space')
    reference = pool.budgets.get('flops', pool.cost(best)['flops'])
    band_flops = band * reference
    fixed = [(best, 'best')] + ([(start, 'start')] if start is not None
                                and start != best else [])
    if not include_fixed:
        fixed = []
    chosen = {structure: role for structure, role in fixed}
    in_band = [e for e in entries if e['cost']['flops'] >= band_flops]
    fixed_band = sum(pool.entries[s]['cost']['flops'] >= band_flops
                     for s in chosen)
    fixed_below = len(chosen) - fixed_band
    below = sorted((e for e in entries if e['cost']['flops'] < band_flops
                    and e['structure'] not in chosen),
                   key=lambda e: (e['score'], e['cost']['flops']))
    # at least band_share in the band; fewer below when the range runs
    # short
    wanted_below = max(fixed_below, min(
        num_archs - math.ceil(num_archs * band_share),
        len(below) + fixed_below))
    wanted_band = num_archs - wanted_below
    if len(in_band) < wanted_band:
        raise StudyError(
            f'--num-archs {num_archs}: the space gives only {len(in_band)} '
            f'distinct structures in the near-budget band (FLOPs >= '
            f'{band_flops:.4g}) and {len(below) + fixed_below} below it; '
            f'the sample needs {wanted_band} in the band; lower --num-archs')
    if not include_fixed:
        # neither the best nor the start, nor their copies, in the sample
        excluded = {best} | ({start} if start is not None else set())
        in_band = [e for e in in_band if e['structure'] not in excluded]
        below = [e for e in below if e['structure'] not in excluded]
        if len(in_band) < wanted_band:
            raise StudyError(
                f'--num-archs {num_archs}: the space gives only '
                f'{len(in_band)} distinct structures in the near-budget band '
                f'besides the best and the start; lower --num-archs')
    band_group = sorted((e for e in in_band if e['structure'] not in chosen),
                        key=lambda e: (e['score'], e['cost']['flops']))
    for group, role, wanted in ((band_group, 'band', wanted_band - fixed_band),
                                (below, 'range', wanted_below - fixed_below)):
        if wanted > 0:
            for entry in _stratified(group, wanted, rng):
                chosen[entry['structure']] = role
    archs = sorted((dict(pool.entries[s], role=role,
                         in_band=pool.entries[s]['cost']['flops'] >=
                         band_flops) for s, role in chosen.items()),
                   key=lambda e: (e['score'], e['cost']['flops']))
    for index, arch in enumerate(archs):
        arch['id'] = f'a{index:02d}'
    return dict(archs=archs, band_flops=band_flops, pool=len(entries),
                best=result['best_score'], notes=notes)
