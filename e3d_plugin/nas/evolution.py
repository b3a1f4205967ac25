"""EntropyEvolution: a training-free evolutionary search of structures.

Each step draws a parent from the population (or two, for a crossover),
mutates it, and evaluates the child: its cost from the structure
(:func:`~e3d_plugin.cost.compute_cost`) against the budgets, then its score.
A child within budget and better than the worst member replaces it; the
population never holds duplicates. Nothing is trained and no module is built,
so a step costs tens of microseconds.

A ``latency`` budget is checked last, only for a child that would enter the
population, against the prediction of a per-unit lookup table
(:class:`~e3d_plugin.nas.latency.LatencyTable`); unit shapes the table lacks
are timed on the device when first met, so the first search on a device is
slower than the next ones.

The whole state (population, random generator, counters, curve) is
checkpointed atomically, so a resumed run ends exactly as an uninterrupted
one with the same seed.
"""
import heapq
import os
import os.path as osp
import pickle
import random
import sys
import time

from ..cost import compute_cost
from ..registry import SCORES, SEARCH_SPACES, SEARCHERS, build
from ..structure import StructureError, load_structure
from .latency import build_latency_predictor

BUDGET_KEYS = ('flops', 'params', 'layers', 'latency')
CHECKPOINT_NAME = 'search_checkpoint.pkl'
_CHECKPOINT_VERSION = 1


class SearchError(ValueError):
    """A search cannot run as configured (budget, checkpoint, config)."""


def _fmt(value):
    return f'{value:.4g}' if isinstance(value, float) or value >= 1e5 else (
        str(value))


class _Progress:
    """A throttled one-line progress display on stderr."""

    def __init__(self, total, enabled=True, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and getattr(self.stream, 'isatty', lambda: False)()
        self.last = time.monotonic()  # time of the last line or redraw
        self.last_fraction = -1.0

    def update(self, done, text, force=False):
        """Redraw (a TTY) or print a line every 10% or 30 s (a file or
        pipe)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if not force and now - self.last < 0.2:
                return
            self.last = now
            width = 24
            filled = int(width * done / max(self.total, 1))
            bar = '#' * filled + '.' * (width - filled)
            self.stream.write(f'\r[{bar}] {done}/{self.total} {text}')
            if force:
                self.stream.write('\n')
            self.stream.flush()
        else:
            fraction = done / max(self.total, 1)
            if force or fraction >= self.last_fraction + 0.1 or (
                    now - self.last >= 30 and done):
                if fraction >= self.last_fraction + 0.1:
                    self.last_fraction = fraction
                self.last = now
                self.stream.write(f'{done}/{self.total} {text}\n')
                self.stream.flush()


@SEARCHERS.register_module()
class EntropyEvolution:
    """Evolutionary search maximising a training-free score under budgets.

    Args:
        score (dict | callable): Score config (``SCORES``) or object.
        space (dict | E3DSearchSpace): Search space config or object.
        init_structure (str | list | Structure): Where the search starts: a
            preset name, a structure file or a list of block dicts.
        budgets (dict): Upper bounds, each optional: ``flops`` (multiply-adds
            of one clip), ``params``, ``layers``, ``latency`` (milliseconds
            per batch, predicted by ``latency``).
        image_size (int | tuple, optional): Clip size for the cost; defaults
            to the space's.
        frames (int, optional): Clip length for the cost; defaults to the
            space's.
        population_size (int): Structures kept. Defaults to 256.
        num_candidates (int): Candidates evaluated in all. Defaults to
            100000.
        crossover_prob (float): Share of children made by crossover (then
            mutated) rather than by mutation alone.
        seed (int): Seed of the search's random generator.
        top_k (int): Best structures reported.
        checkpoint_interval (int): Candidates between checkpoints (0: none).
        log_interval (int): Candidates between points of the curve.
        latency (dict, optional): The latency predictor: a
            :class:`~e3d_plugin.nas.latency.LatencyTable` config (``type``
            optional), e.g. ``dict(device='cpu', batch_size=1,
            num_threads=2)``, or an object with ``predict(structure,
            image_size, frames)``. Defaults to a CPU table when a latency
            budget is set; without one, it only adds the predicted latency
            to the reported structures.
        work_dir (str, optional): Where checkpoints go.
        logger (optional): An ``MMLogger`` for progress lines.
        progress (bool): Show the progress bar on stderr.
    """

    def __init__(self,
                 score,
                 space,
                 init_structure,
                 budgets=None,
                 image_size=None,
                 frames=None,
                 population_size=256,
                 num_candidates=100000,
                 crossover_prob=0.2,
                 seed=0,
                 top_k=5,
                 checkpoint_interval=10000,
                 log_interval=1000,
                 latency=None,
                 work_dir=None,
                 logger=None,
                 progress=True):
        self.score = build(SCORES, score) if isinstance(score,
                                                        dict) else score
        self.space = build(SEARCH_SPACES, space) if isinstance(
            space, dict) else space
        self.budgets = dict(budgets or {})
        unknown = sorted(set(self.budgets) - set(BUDGET_KEYS))
        if unknown:
            raise SearchError(
                f"unknown budget '{unknown[0]}'; budgets are "
                f'{", ".join(BUDGET_KEYS)}')
        for key, value in self.budgets.items():
            if not isinstance(value, (int, float)) or value <= 0:
                raise SearchError(
                    f'budget {key} must be a positive number, got {value!r}')
        if 'latency' in self.budgets or latency is not None:
            self.latency = build_latency_predictor(latency)
        else:
            self.latency = None
        self.image_size = image_size or self.space.image_size
        self.frames = int(frames or self.space.frames)
        for name, value, low in (('population_size', population_size, 1),
                                 ('num_candidates', num_candidates, 0),
                                 ('top_k', top_k, 1),
                                 ('checkpoint_interval', checkpoint_interval,
                                  0), ('log_interval', log_interval, 1)):
            if not isinstance(value, int) or value < low:
                raise SearchError(
                    f'search.{name} must be an integer >= {low}, got '
                    f'{value!r}')
        if not 0 <= crossover_prob <= 1:
            raise SearchError(
                f'search.crossover_prob must be in [0, 1], got '
                f'{crossover_prob!r}')
        self.population_size = population_size
        self.num_candidates = num_candidates
        self.crossover_prob = float(crossover_prob)
        self.seed = int(seed)
        self.top_k = top_k
        self.checkpoint_interval = checkpoint_interval
        self.log_interval = log_interval
        self.work_dir = work_dir
        self.logger = logger
        self.progress = progress
        try:
            structure = load_structure(init_structure)
        except StructureError as e:
            raise SearchError(f'init_structure: {e}') from None
        problems = self.space.check(structure)
        if problems:
            raise SearchError(f'init_structure: {problems[0]}')
        self.init_structure = structure

    # ------------------------------------------------------------------
    def evaluate_cost(self, structure, with_latency=True):
        """Cost dict of ``structure`` (with its predicted latency when
        there is a predictor and ``with_latency``)."""
        flops, params, layers = compute_cost(structure, self.image_size,
                                             self.frames)
        cost = dict(flops=flops, params=params, layers=layers)
        if self.latency is not None and with_latency:
            cost['latency'] = self.latency.predict(structure, self.image_size,
                                                   self.frames)
        return cost

    def _over(self, cost):
        """Worst budget overrun ratio (<= 1 when within every budget)."""
        return max((cost[k] / v for k, v in self.budgets.items()),
                   default=0.0)

    def _feasible_start(self, rng):
        """The initial structure, shrunk into the budgets if it is over."""
        structure = self.init_structure
        with_latency = 'latency' in self.budgets
        cost = self.evaluate_cost(structure, with_latency)
        over = self._over(cost)
        smallest = (over, structure, cost)
        attempts = 0
        while over > 1 and attempts < 5000:
            attempts += 1
            child = self.space.mutate(smallest[1], rng)
            child_cost = self.evaluate_cost(child, with_latency)
            child_over = self._over(child_cost)
            if child_over < smallest[0]:
                smallest = (child_over, child, child_cost)
                over = child_over
        if over > 1:
            _, _, cost = smallest
            worst = max(self.budgets,
                        key=lambda k: cost[k] / self.budgets[k])
            unit = ' ms' if worst == 'latency' else ''
            raise SearchError(
                f'no structure of the space meets the {worst} budget '
                f'{_fmt(self.budgets[worst])}{unit}: the smallest found '
                f'needs {_fmt(cost[worst])}{unit} {worst} (raise the budget '
                'or start from a smaller init_structure)')
        return smallest[1], smallest[2]

    # ------------------------------------------------------------------
    def _new_state(self):
        rng = random.Random(self.seed)
        start, cost = self._feasible_start(rng)
        score = self.score(start)
        return dict(
            version=_CHECKPOINT_VERSION,
            seed=self.seed,
            budgets=self.budgets,
            latency_settings=self._latency_settings(),
            done=0,
            order=1,
            heap=[(score, 0, start, cost)],
            rng=rng.getstate(),
            curve=[(0, score, score)],
            best=(score, 0, start, cost))

    def checkpoint_path(self):
        """Where this search's checkpoint lives (None without work_dir)."""
        return osp.join(self.work_dir, CHECKPOINT_NAME) if self.work_dir \
            else None

    def _save(self, state):
        path = self.checkpoint_path()
        if path is None:
            return
        os.makedirs(self.work_dir, exist_ok=True)
        if self.latency is not None and hasattr(self.latency, 'save'):
            # the table first: a resumed run must find every unit the
            # checkpointed population was judged with
            self.latency.save()
        tmp = f'{path}.tmp{os.getpid()}'
        with open(tmp, 'wb') as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    def load_checkpoint(self):
        """The saved state; :class:`SearchError` if missing or corrupt."""
        path = self.checkpoint_path()
        if path is None or not osp.isfile(path):
            raise SearchError(
                f'--resume: no checkpoint at {path}; run without --resume to '
                'start a new search')
        try:
            with open(path, 'rb') as f:
                state = pickle.load(f)
            if state.get('version') != _CHECKPOINT_VERSION:
                raise ValueError('unknown checkpoint version')
            heap = state['heap']
            _ = (state['rng'], state['done'], state['order'], state['best'],
                 state['curve'], heap[0][2])
        except Exception as e:  # any unpickling fault means corrupt
            raise SearchError(
                f'--resume: checkpoint {path} is corrupt ({type(e).__name__}'
                f': {e}); delete it to start over') from None
        if state['seed'] != self.seed or state['budgets'] != self.budgets:
            raise SearchError(
                f"--resume: checkpoint {path} was written with seed "
                f"{state['seed']} and budgets {state['budgets']}, not seed "
                f'{self.seed} and budgets {self.budgets}')
        saved = state.get('latency_settings')
        if 'latency' in self.budgets and saved != self._latency_settings():
            raise SearchError(
                f'--resume: checkpoint {path} was written with latency '
                f'settings {saved}, not {self._latency_settings()}')
        return state

    def _latency_settings(self):
        if 'latency' not in self.budgets:
            return None
        return getattr(self.latency, 'settings', type(self.latency).__name__)

    # ------------------------------------------------------------------
    def run(self, resume=False):
        """Search; return the result dict (see :meth:`result`)."""
        state = self.load_checkpoint() if resume else self._new_state()
        started = time.monotonic()
        elapsed_before = state.get('elapsed_s', 0.0)
        rng = random.Random()
        rng.setstate(state['rng'])
        heap = state['heap']
        members = {entry[2] for entry in heap}
        done, order = state['done'], state['order']
        best = state['best']
        curve = state['curve']
        score_fn, space, budgets = self.score, self.space, self.budgets
        cost_fn = compute_cost
        image_size, frames = self.image_size, self.frames
        latency = self.latency
        budget_flops = budgets.get('flops', float('inf'))
        budget_params = budgets.get('params', float('inf'))
        budget_layers = budgets.get('layers', float('inf'))
        budget_latency = budgets.get('latency')
        if budget_latency is None:
            latency = None  # predicted for the report only, at the end
        capacity, total = self.population_size, self.num_candidates
        crossover_prob = self.crossover_prob
        bar = _Progress(total, enabled=self.progress)
        # timing units makes steps slow: show progress more often then
        show_every = 20 if latency is not None else self.log_interval
        random_ = rng.random

        def status():
            text = f'best {best[0]:.4f}'
            for key in budgets:
                text += (f' {key} {_fmt(best[3][key])}/'
                         f'{_fmt(budgets[key])}')
            if latency is not None and hasattr(latency, 'num_measured'):
                text += f' (units timed {latency.num_measured})'
            return text

        while done < total:
            size = len(heap)
            if size > 1 and random_() < crossover_prob:
                first = heap[int(random_() * size)][2]
                second = heap[int(random_() * size)][2]
                child = space.mutate(space.crossover(first, second, rng),
                                     rng)
            else:
                child = space.mutate(heap[int(random_() * size)][2], rng)
            done += 1
            if child not in members:
                flops, params, layers = cost_fn(child, image_size, frames)
                if (flops <= budget_flops and params <= budget_params
                        and layers <= budget_layers):
                    value = score_fn(child)
                    cost = None
                    if size < capacity or value > heap[0][0]:
                        cost = dict(flops=flops, params=params,
                                    layers=layers)
                        if latency is not None:
                            # last and only for a child that would enter:
                            # the one check that may time units
                            predicted = latency.predict(child, image_size,
                                                        frames)
                            if predicted <= budget_latency:
                                cost['latency'] = predicted
                            else:
                                cost = None
                    if cost is not None:
                        entry = (value, order, child, cost)
                        order += 1
                        if size < capacity:
                            heapq.heappush(heap, entry)
                            members.add(child)
                        elif value > heap[0][0]:
                            members.discard(heapq.heapreplace(heap,
                                                              entry)[2])
                            members.add(child)
                        if value > best[0]:
                            best = entry
            if done % show_every == 0 and done % self.log_interval:
                bar.update(done, status())
            if done % self.log_interval == 0 or done == total:
                scores = sorted(entry[0] for entry in heap)
                curve.append((done, best[0], scores[len(scores) // 2]))
                bar.update(done, status(), force=done == total)
                if self.logger is not None and (done % (
                        self.log_interval * 10) == 0 or done == total):
                    self.logger.info(f'{done}/{total} candidates, '
                                     f'{status()}')
            if self.checkpoint_interval and (
                    done % self.checkpoint_interval == 0 or done == total):
                self._save(
                    dict(version=_CHECKPOINT_VERSION, seed=self.seed,
                         budgets=budgets,
                         latency_settings=self._latency_settings(),
                         done=done, order=order, heap=heap,
                         rng=rng.getstate(), curve=curve, best=best,
                         elapsed_s=elapsed_before + time.monotonic() -
                         started))
        elapsed = elapsed_before + time.monotonic() - started
        if self.latency is not None:
            if budget_latency is None:  # report the latency of the best
                best = self._with_latency(best)
            if hasattr(self.latency, 'save'):
                self.latency.save()
            if self.logger is not None and hasattr(self.latency,
                                                   'num_measured'):
                self.logger.info(
                    f'latency table {self.latency.table_file}: '
                    f'{len(self.latency)} units, {self.latency.num_measured}'
                    f' timed by this run in {self.latency.measure_s:.1f} s')
        return self.result(heap, best, done, curve, elapsed)

    def _with_latency(self, entry):
        value, order, structure, cost = entry
        if 'latency' not in cost:
            cost = dict(cost, latency=self.latency.predict(
                structure, self.image_size, self.frames))
        return (value, order, structure, cost)

    def result(self, heap, best, done, curve, elapsed):
        """The search's outcome as a plain dict."""
        ranked = sorted(heap, key=lambda e: (-e[0], e[1]))[:self.top_k]
        if self.latency is not None:
            ranked = [self._with_latency(e) for e in ranked]
        return dict(
            best_score=best[0],
            best_structure=best[2],
            best_cost=best[3],
            top_k=[dict(score=e[0], structure=e[2], cost=e[3])
                   for e in ranked],
            num_evaluated=done,
            elapsed_s=elapsed,
            curve=curve,
            budgets=self.budgets,
            image_size=self.image_size,
            frames=self.frames,
            seed=self.seed)


__all__ = ['EntropyEvolution', 'SearchError', 'BUDGET_KEYS']
