"""EntropyEvolution: a training-free evolutionary search of structures.

Each step of :meth:`EntropyEvolution.run` is one named method:

* :meth:`~EntropyEvolution.propose` draws a parent from the population (or
  two, for a crossover) and mutates it;
* :meth:`~EntropyEvolution.evaluate` judges the child: its cost from the
  structure (:func:`~e3d_plugin.cost.compute_cost`: FLOPs, params, layers
  and the memory, ``max_feature`` and ``activation_bytes``) against the
  budgets, then its score; it returns a :class:`Candidate` only for a child
  that enters the population;
* :meth:`~EntropyEvolution.admit` puts it in, in place of the worst member
  once the population is full (the population never holds duplicates);
* :meth:`~EntropyEvolution.record` adds a point to the curve and shows
  progress;
* :meth:`~EntropyEvolution.checkpoint` saves the whole state.

Nothing is trained and no module is built, so a step costs tens of
microseconds.

A ``latency`` budget is checked last, only for a child that would enter the
population, against the prediction of a per-unit lookup table
(:class:`~e3d_plugin.nas.latency.LatencyTable`); unit shapes the table lacks
are timed on the device when first met, so the first search on a device is
slower than the next ones.

The checkpoint (:mod:`e3d_plugin.nas.results` reads and writes it) is JSON
with a checksum, written atomically: a resumed run ends exactly as an
uninterrupted one, and a damaged or edited file is refused. It records every
setting that defines the search (:meth:`~EntropyEvolution.settings`);
``run(resume=True)`` with any of them changed stops with one line naming
the first difference. ``num_candidates`` is one of them: a search cannot be
extended on resume (start a new one with more candidates instead).
"""
import heapq
import inspect
import numbers
import random
import sys
import time

from ..checks import is_int, is_number, short_repr
from ..cost import COST_FIELDS, cost_totals
from ..registry import (SCORES, SEARCH_SPACES, SEARCHERS, UnknownTypeError,
                        build)
from ..structure import StructureError, load_structure
from .latency import build_latency_predictor
from .results import (check_new_search, checkpoint_path, read_checkpoint,
                      remove_stale_temporaries, write_checkpoint)
from .state import Candidate, CurvePoint, SearchError, SearchState

BUDGET_KEYS = ('flops', 'params', 'layers', 'latency', 'max_feature',
               'activation_bytes')


def _fmt(value):
    return f'{value:.4g}' if isinstance(value, float) or value >= 1e5 else (
        str(value))


def check_config_types(section, cls, cfg):
    """Refuse a value whose type cannot be what ``cls``'s constructor
    default says (a string for a number or a flag, a number for a list or a
    dict, NaN): :class:`SearchError` naming ``section.key``.

    Catches what a config or ``--cfg-options`` typo gives (``'false'`` for
    False, ``7`` for a list) before the constructor turns it into a silently
    different value; the constructors check their ranges themselves.
    """
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return
    for key, value in cfg.items():
        parameter = parameters.get(key)
        if parameter is None or parameter.default is inspect.Parameter.empty:
            continue
        default = parameter.default
        if isinstance(default, bool):
            ok, what = isinstance(value, bool), 'True or False'
        elif isinstance(default, numbers.Real):
            # a number, or (image_size) a pair of them
            ok = is_number(value) or (isinstance(value, (list, tuple))
                                       and all(map(is_number, value)))
            what = 'a finite number'
        elif isinstance(default, (list, tuple)):
            ok, what = isinstance(value, (list, tuple)), 'a list'
        elif isinstance(default, dict):
            ok, what = isinstance(value, dict), 'a dict'
        elif isinstance(default, str):
            ok, what = isinstance(value, str), 'a string'
        else:
            continue
        if not ok:
            hint = ' (a boolean, not a string: write it without quotes)' if (
                isinstance(default, bool) and isinstance(value, str)) else ''
            raise SearchError(f'{section}.{key} must be {what}{hint}, got '
                              f'{short_repr(value)}')


def _build_part(section, registry, cfg, needs):
    """Build the score / space from its config (or take the object)."""
    if isinstance(cfg, dict):
        cfg = dict(cfg)
        cls = registry.get(cfg['type']) if isinstance(
            cfg.get('type'), str) else None
        if cls is not None:
            check_config_types(section, cls, {k: v for k, v in cfg.items()
                                              if k != 'type'})
        try:
            return build(registry, cfg)
        except UnknownTypeError as e:
            raise SearchError(str(e)) from None
        except (TypeError, ValueError) as e:
            message = str(e).strip().splitlines()
            raise SearchError(f'{section}: {message[-1] if message else e}'
                              ) from None
    if not hasattr(cfg, needs):
        raise SearchError(
            f'{section} must be a dict (a config with a type) or an object '
            f'with {needs}, got {short_repr(cfg)}')
    return cfg


def object_settings(obj):
    """``obj``'s type and arguments, JSON-ready: its ``settings()`` (or
    ``settings`` dict) when it has one, else the attributes named like its
    constructor's arguments."""
    settings = getattr(obj, 'settings', None)
    if callable(settings):
        values = settings()
    elif isinstance(settings, dict):
        values = settings
    else:
        values = {}
        try:
            parameters = inspect.signature(type(obj)).parameters.values()
        except (TypeError, ValueError):
            parameters = ()
        for parameter in parameters:
            if parameter.kind in (parameter.VAR_POSITIONAL,
                                  parameter.VAR_KEYWORD):
                continue
            if hasattr(obj, parameter.name):
                values[parameter.name] = getattr(obj, parameter.name)
    kind = obj.__qualname__ if inspect.isfunction(obj) else type(
        obj).__name__
    settings = dict(type=kind)
    settings.update(jsonable(dict(values)))
    return settings


def jsonable(value):
    """``value`` with tuples as lists and unknown objects as their repr, so
    that it survives a JSON round trip unchanged."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return repr(value)


def first_difference(saved, now, path=''):
    """``(key path, saved value, current value)`` of the first difference
    of two JSON-ready values (``now``'s key order), or None."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in list(now) + [k for k in saved if k not in now]:
            found = first_difference(saved.get(key), now.get(key),
                                     f'{path}.{key}' if path else key)
            if found is not None:
                return found
        return None
    if (isinstance(saved, list) and isinstance(now, list)
            and len(saved) == len(now)
            and any(isinstance(v, (dict, list)) for v in now)):
        for index, (a, b) in enumerate(zip(saved, now)):
            found = first_difference(a, b, f'{path}.{index}')
            if found is not None:
                return found
        return None
    # 5e9 and 5000000000 define the same budget; True and 1 differ
    if saved == now and isinstance(saved, bool) == isinstance(now, bool):
        return None
    return path, saved, now


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
            per batch, predicted by ``latency``), ``max_feature`` (elements
            of the largest feature map of one clip) and ``activation_bytes``
            (bytes a training step keeps for backward per clip, float32,
            of the backbone with its defaults: ReLU where a block sets no
            ``act``, no ``with_cp``; see :mod:`e3d_plugin.cost`).
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

    :meth:`run` returns the result dict; :func:`~e3d_plugin.nas.results.
    write_results` writes it as ``tools/search.py`` does.
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
        self.budgets = self._check_budgets(budgets)
        for name, value, low in (('population_size', population_size, 1),
                                 ('num_candidates', num_candidates, 0),
                                 ('top_k', top_k, 1),
                                 ('checkpoint_interval', checkpoint_interval,
                                  0), ('log_interval', log_interval, 1)):
            if not is_int(value) or value < low:
                raise SearchError(
                    f'search.{name} must be an integer >= {low}, got '
                    f'{short_repr(value)}')
        if not is_number(crossover_prob) or not 0 <= crossover_prob <= 1:
            raise SearchError(
                f'search.crossover_prob must be a number in [0, 1], got '
                f'{short_repr(crossover_prob)}')
        if not is_int(seed):
            raise SearchError(
                f'search.seed must be an integer, got {short_repr(seed)}')
        if not isinstance(progress, bool):
            raise SearchError(
                f'search.progress must be True or False, got '
                f'{short_repr(progress)}')
        if work_dir is not None and not isinstance(work_dir, str):
            raise SearchError(
                f'work_dir must be a path, got {short_repr(work_dir)}')
        self.score = _build_part('score', SCORES, score, '__call__')
        self.space = _build_part('space', SEARCH_SPACES, space, 'mutate')
        if 'latency' in self.budgets or latency is not None:
            if latency is not None and not (isinstance(latency, dict)
                                            or hasattr(latency, 'predict')):
                raise SearchError(
                    'search.latency must be a dict (a LatencyTable config) '
                    f'or a predictor, got {short_repr(latency)}')
            self.latency = build_latency_predictor(latency)
        else:
            self.latency = None
        self.image_size = self._check_clip(image_size, frames)
        self.frames = int(frames or self.space.frames)
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
        if not isinstance(init_structure, (str, list, tuple)):
            raise SearchError(
                'init_structure must be a preset name, a structure file or '
                f'a list of block dicts, got {short_repr(init_structure)}')
        try:
            structure = load_structure(init_structure)
        except StructureError as e:
            raise SearchError(f'init_structure: {e}') from None
        problems = self.space.check(structure)
        if problems:
            raise SearchError(f'init_structure: {problems[0]}')
        self.init_structure = structure
        inf = float('inf')
        # the hot loop reads the limits as plain attributes
        self._max_flops = self.budgets.get('flops', inf)
        self._max_params = self.budgets.get('params', inf)
        self._max_layers = self.budgets.get('layers', inf)
        self._max_feature = self.budgets.get('max_feature', inf)
        self._max_activation = self.budgets.get('activation_bytes', inf)
        self._max_latency = self.budgets.get('latency')

    @staticmethod
    def _check_budgets(budgets):
        if budgets is None:
            return {}
        if not isinstance(budgets, dict):
            raise SearchError(
                'search.budgets must be a dict, e.g. dict(flops=5e9, '
                f'layers=83), got {short_repr(budgets)}')
        budgets = dict(budgets)
        unknown = sorted(str(k) for k in set(budgets) - set(BUDGET_KEYS))
        if unknown:
            raise SearchError(
                f"unknown budget '{unknown[0]}'; budgets are "
                f'{", ".join(BUDGET_KEYS)}')
        for key, value in budgets.items():
            if not is_number(value) or value <= 0:
                raise SearchError(
                    f'search.budgets: budget {key} must be a positive, finite '
                    f'number, got {short_repr(value)}')
        return budgets

    def _check_clip(self, image_size, frames):
        if image_size is None:
            image_size = self.space.image_size
        elif not (is_int(image_size) and image_size > 0) and not (
                isinstance(image_size, (list, tuple)) and len(image_size) == 2
                and all(is_int(v) and v > 0 for v in image_size)):
            raise SearchError(
                'search.image_size must be a positive integer or a '
                f'(height, width) pair of them, got {short_repr(image_size)}')
        if frames is not None and not (is_int(frames) and frames > 0):
            raise SearchError(
                f'search.frames must be a positive integer, got '
                f'{short_repr(frames)}')
        return image_size

    # ------------------------------------------------------------------
    def settings(self):
        """Everything that defines the search, JSON-ready: a checkpoint
        records it, and resume refuses any difference."""
        image_size = self.image_size
        return dict(
            score=object_settings(self.score),
            space=object_settings(self.space),
            image_size=jsonable(image_size if isinstance(
                image_size, (list, tuple)) else (image_size, image_size)),
            frames=self.frames,
            init_structure=self.init_structure.to_dicts(),
            budgets=jsonable(self.budgets),
            population_size=self.population_size,
            num_candidates=self.num_candidates,
            crossover_prob=self.crossover_prob,
            seed=self.seed,
            log_interval=self.log_interval,
            latency=self._latency_settings())

    def _latency_settings(self):
        # only a latency budget changes which structures the search keeps
        if 'latency' not in self.budgets:
            return None
        return object_settings(self.latency)

    def evaluate_cost(self, structure, with_latency=True):
        """Cost dict of ``structure`` (with its predicted latency when
        there is a predictor and ``with_latency``)."""
        cost = dict(zip(COST_FIELDS, cost_totals(structure, self.image_size,
                                               self.frames)))
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
    def start(self):
        """A new run's state: the start structure (shrunk into the budgets)
        as the only member."""
        rng = random.Random(self.seed)
        structure, cost = self._feasible_start(rng)
        first = Candidate(self.score(structure), 0, structure, cost)
        return SearchState(done=0, order=1, population=[first], best=first,
                           curve=[CurvePoint(0, first.score, first.score)],
                           rng=rng)

    def checkpoint_path(self):
        """Where this search's checkpoint lives (None without work_dir)."""
        return checkpoint_path(self.work_dir) if self.work_dir else None

    def load_checkpoint(self):
        """The saved state, after checking that the checkpoint's settings
        are this search's; :class:`SearchError` (one line) otherwise.

        A checkpoint written before the cost had its memory fields
        (``max_feature``, ``activation_bytes``) resumes when no memory
        budget is set: its members get those fields computed from their
        structures, as a new run would have recorded them."""
        settings, state = read_checkpoint(self.work_dir)
        difference = first_difference(settings, self.settings())
        if difference is not None:
            key, saved, now = difference
            raise SearchError(
                f'--resume: {key}: {short_repr(saved)} in the checkpoint, '
                f'{short_repr(now)} now; resume with the settings of the '
                'checkpoint, or start a new search in another work dir')
        completed = {}
        for candidate in state.population + [state.best]:
            cost = candidate.cost
            if not all(key in cost for key in COST_FIELDS):
                if candidate.structure not in completed:
                    completed[candidate.structure] = self.evaluate_cost(
                        candidate.structure, with_latency=False)
                for key, value in completed[candidate.structure].items():
                    cost.setdefault(key, value)
        return state

    # ------------------------------------------------------------------
    def propose(self, state):
        """A child of one parent (mutation) or two (crossover, then
        mutation), drawn uniformly from the population."""
        population = state.population
        size = len(population)
        rng = state.rng
        random_ = rng.random
        space = self.space
        if size > 1 and random_() < self.crossover_prob:
            first = population[int(random_() * size)].structure
            second = population[int(random_() * size)].structure
            return space.mutate(space.crossover(first, second, rng), rng)
        return space.mutate(population[int(random_() * size)].structure, rng)

    def evaluate(self, state, child):
        """``child`` as a :class:`Candidate` if it enters the population:
        new, within every budget, and better than the worst member once the
        population is full; None otherwise. Cheap checks first: the cost,
        the score, and last the latency (which may time units)."""
        if child in state.members:
            return None
        flops, params, layers, feature, activation = cost_totals(
            child, self.image_size, self.frames)
        if (flops > self._max_flops or params > self._max_params
                or layers > self._max_layers or feature > self._max_feature
                or activation > self._max_activation):
            return None
        value = self.score(child)
        population = state.population
        if len(population) >= self.population_size and (
                value <= population[0].score):
            return None
        cost = dict(flops=flops, params=params, layers=layers,
                    max_feature=feature, activation_bytes=activation)
        if self._max_latency is not None:
            predicted = self.latency.predict(child, self.image_size,
                                             self.frames)
            if predicted > self._max_latency:
                return None
            cost['latency'] = predicted
        return Candidate(value, state.order, child, cost)

    def admit(self, state, candidate):
        """Put ``candidate`` in the population (replacing the worst member
        once it is full)."""
        state.order += 1
        population = state.population
        if len(population) < self.population_size:
            heapq.heappush(population, candidate)
        else:
            state.members.discard(
                heapq.heapreplace(population, candidate).structure)
        state.members.add(candidate.structure)
        if candidate.score > state.best.score:
            state.best = candidate

    def record(self, state, bar=None):
        """Add the curve point of ``state.done``; show and log progress."""
        scores = sorted(candidate.score for candidate in state.population)
        state.curve.append(CurvePoint(state.done, state.best.score,
                                      scores[len(scores) // 2]))
        done, total = state.done, self.num_candidates
        if bar is not None:
            bar.update(done, self._status(state), force=done == total)
        if self.logger is not None and (
                done % (self.log_interval * 10) == 0 or done == total):
            self.logger.info(f'{done}/{total} candidates, '
                             f'{self._status(state)}')

    def checkpoint(self, state, elapsed_s):
        """Save ``state`` (and first the latency table: a resumed run must
        find every unit the population was judged with)."""
        if not self.work_dir:
            return
        if self.latency is not None and hasattr(self.latency, 'save'):
            self.latency.save()
        write_checkpoint(self.work_dir, self.settings(), state, elapsed_s,
                         finished=state.done >= self.num_candidates)

    def _status(self, state):
        best = state.best
        text = f'best {best.score:.4f}'
        for key in self.budgets:
            text += f' {key} {_fmt(best.cost[key])}/{_fmt(self.budgets[key])}'
        if self._max_latency is not None and hasattr(self.latency,
                                                     'num_measured'):
            text += f' (units timed {self.latency.num_measured})'
        return text

    # ------------------------------------------------------------------
    def run(self, resume=False):
        """Search; return the result dict (see :meth:`result`).

        With ``resume``, continue from the checkpoint in ``work_dir``
        (refused if any defining setting differs). Without, a work dir
        holding an unfinished search is refused rather than overwritten.
        """
        if self.work_dir:
            remove_stale_temporaries(self.work_dir)
        if resume:
            state = self.load_checkpoint()
        else:
            if self.work_dir:
                check_new_search(self.work_dir)
            state = self.start()
        started = time.monotonic()
        elapsed_before = state.elapsed_s
        total, log_interval = self.num_candidates, self.log_interval
        interval = self.checkpoint_interval
        bar = _Progress(total, enabled=self.progress)
        # timing units makes steps slow: show progress more often then
        show_every = 20 if self._max_latency is not None else log_interval
        propose, evaluate, admit = self.propose, self.evaluate, self.admit
        while state.done < total:
            child = propose(state)
            state.done += 1
            candidate = evaluate(state, child)
            if candidate is not None:
                admit(state, candidate)
            done = state.done
            if done % show_every == 0 and done % log_interval:
                bar.update(done, self._status(state))
            if done % log_interval == 0 or done == total:
                self.record(state, bar)
            if interval and (done % interval == 0 or done == total):
                self.checkpoint(state, elapsed_before + time.monotonic() -
                                started)
        elapsed = elapsed_before + time.monotonic() - started
        best = state.best
        if self.latency is not None:
            if self._max_latency is None:  # report the latency of the best
                best = self._with_latency(best)
            if hasattr(self.latency, 'save'):
                self.latency.save()
            if self.logger is not None and hasattr(self.latency,
                                                   'num_measured'):
                self.logger.info(
                    f'latency table {self.latency.table_file}: '
                    f'{len(self.latency)} units, {self.latency.num_measured}'
                    f' timed by this run in {self.latency.measure_s:.1f} s')
        return self.result(state, best, elapsed)

    def _with_latency(self, candidate):
        if 'latency' in candidate.cost:
            return candidate
        return candidate._replace(cost=dict(
            candidate.cost, latency=self.latency.predict(
                candidate.structure, self.image_size, self.frames)))

    def result(self, state, best, elapsed):
        """The search's outcome as a plain dict: ``best_score``,
        ``best_structure``, ``best_cost``, ``top_k`` (dicts of ``score``,
        ``structure``, ``cost``), ``population`` (every final member, a
        :class:`Candidate`, best first), ``num_evaluated``, ``elapsed_s``,
        ``curve`` (:class:`CurvePoint` list), ``budgets``, ``image_size``,
        ``frames``, ``seed``, ``settings`` and ``latency_table`` (the
        table file, or None)."""
        ranked = sorted(state.population, key=lambda c: (-c.score, c.order))
        top = ranked[:self.top_k]
        if self.latency is not None:
            top = [self._with_latency(c) for c in top]
        return dict(
            best_score=best.score,
            best_structure=best.structure,
            best_cost=best.cost,
            top_k=[dict(score=c.score, structure=c.structure, cost=c.cost)
                   for c in top],
            population=ranked,
            num_evaluated=state.done,
            elapsed_s=elapsed,
            curve=state.curve,
            budgets=self.budgets,
            image_size=self.image_size,
            frames=self.frames,
            seed=self.seed,
            settings=self.settings(),
            latency_table=getattr(self.latency, 'table_file', None))


__all__ = ['EntropyEvolution', 'SearchError', 'BUDGET_KEYS', 'Candidate',
           'CurvePoint', 'SearchState', 'check_config_types',
           'object_settings', 'first_difference', 'jsonable']
