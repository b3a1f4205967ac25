"""Rank statistics of a rank study, from ``scipy.stats``.

Kendall's tau-b (``kendalltau``, ties handled), Spearman's rho
(``spearmanr``, average ranks for ties) and percentile bootstrap intervals
(``bootstrap`` with ``paired=True``: architectures are resampled with their
proxy value and accuracy together). A case where a rank correlation is not
defined (fewer than 3 architectures, a constant proxy or accuracy) gives NaN
and a ``note`` saying why, never an exception.
"""
import math
import warnings

import numpy as np

#: Fewest architectures a correlation is computed for.
MIN_ARCHS = 3


def _tau(x, y):
    from scipy.stats import kendalltau
    return kendalltau(x, y)[0]  # [0]: the statistic in every scipy


def _rho(x, y):
    from scipy.stats import spearmanr
    return spearmanr(x, y)[0]


def _degenerate(x, y, labels):
    """Why a rank correlation of ``x`` and ``y`` is undefined, or None."""
    if len(x) < MIN_ARCHS:
        return f'{len(x)} architectures; at least {MIN_ARCHS} are needed'
    for values, label in zip((x, y), labels):
        if np.all(values == values[0]):
            return f'the {label} is the same for every architecture'
    return None


def _generator(function, seed):
    """The seeded generator argument of a scipy function: ``rng`` since
    scipy 1.15, ``random_state`` before."""
    import inspect
    name = 'rng' if 'rng' in inspect.signature(
        function).parameters else 'random_state'
    return {name: np.random.default_rng(seed)}


def _tau_many(a, b, axis=-1):
    """Kendall's tau-b of ``a`` against ``b`` along ``axis`` for every other
    index at once (``kendalltau``'s statistic: concordant minus discordant
    pairs over the root of the pairs untied in each); NaN where ``a`` or
    ``b`` holds one value only."""
    a = np.moveaxis(np.asarray(a, dtype=float), axis, -1)
    b = np.moveaxis(np.asarray(b, dtype=float), axis, -1)
    n = a.shape[-1]
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    sa = np.sign(a[..., :, None] - a[..., None, :])[..., upper]
    sb = np.sign(b[..., :, None] - b[..., None, :])[..., upper]
    untied = (sa * sa).sum(-1) * (sb * sb).sum(-1)
    with np.errstate(invalid='ignore', divide='ignore'):
        tau = (sa * sb).sum(-1) / np.sqrt(untied)
    return np.where(untied > 0, tau, math.nan)


def _rho_many(a, b, axis=-1):
    """Spearman's rho of ``a`` against ``b`` along ``axis`` for every other
    index at once (``spearmanr``'s statistic: the Pearson correlation of
    average ranks); NaN where ``a`` or ``b`` holds one value only."""
    from scipy.stats import rankdata
    ra = rankdata(np.moveaxis(np.asarray(a, dtype=float), axis, -1),
                  axis=-1)
    rb = rankdata(np.moveaxis(np.asarray(b, dtype=float), axis, -1),
                  axis=-1)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    spread = (ra * ra).sum(-1) * (rb * rb).sum(-1)
    with np.errstate(invalid='ignore', divide='ignore'):
        rho = (ra * rb).sum(-1) / np.sqrt(spread)
    return np.where(spread > 0, np.clip(rho, -1.0, 1.0), math.nan)


#: The vectorised form of each statistic (for the bootstrap).
_MANY = {_tau: _tau_many, _rho: _rho_many}
#: Elements of the pair-sign arrays one bootstrap batch may hold.
_BATCH_ELEMENTS = 1 << 22


def _interval(x, y, statistic, n_resamples, confidence, seed):
    """Percentile bootstrap interval of ``statistic(x, y)`` and the number
    of resamples it is undefined for (left out; NaN when they are half or
    more). The resamples are computed at once (the vectorised form of the
    statistic, in batches that bound the memory); a resample that repeats
    one architecture only is undefined, not 0."""
    from scipy.stats import bootstrap

    many = _MANY[statistic]
    batch = max(1, _BATCH_ELEMENTS // max(1, len(x)) ** 2)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # scipy's warning on NaN resamples
        result = bootstrap((x, y), many, paired=True, vectorized=True,
                           n_resamples=n_resamples, batch=batch,
                           confidence_level=confidence, method='percentile',
                           **_generator(bootstrap, seed))
    distribution = np.asarray(result.bootstrap_distribution)
    defined = distribution[np.isfinite(distribution)]
    undefined = int(distribution.size - defined.size)
    if not undefined:
        low, high = result.confidence_interval
    elif defined.size > distribution.size / 2:
        # the quantiles scipy takes (linear interpolation), over the
        # defined resamples only
        alpha = (1 - confidence) / 2
        low, high = np.quantile(defined, [alpha, 1 - alpha])
    else:
        low = high = math.nan
    return [float(low), float(high)], undefined


def rank_correlation(x, y, n_resamples=2000, confidence=0.95, seed=0,
                     labels=('proxy', 'accuracy')):
    """Kendall tau-b and Spearman rho of ``x`` against ``y`` with bootstrap
    intervals (``n_resamples`` paired resamples drawn with ``seed``).
    Pairs with a NaN are left out; ``labels`` name ``x`` and ``y`` in the
    note of a degenerate case.

    Returns:
        dict: ``n``, ``kendall_tau``, ``kendall_tau_ci`` (``[low, high]``),
        ``spearman_rho``, ``spearman_rho_ci`` and ``note`` (None, or why the
        values are NaN, or how many bootstrap resamples were left out:
        those that repeat one value only, where the statistic is undefined;
        the interval is NaN when they are half or more).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f'rank_correlation needs two 1-D arrays of one length, got '
            f'shapes {x.shape} and {y.shape}')
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    result = dict(n=int(len(x)), kendall_tau=math.nan,
                  kendall_tau_ci=[math.nan, math.nan],
                  spearman_rho=math.nan,
                  spearman_rho_ci=[math.nan, math.nan], note=None)
    reason = _degenerate(x, y, labels)
    if reason is not None:
        result['note'] = reason
        return result
    result['kendall_tau'] = float(_tau(x, y))
    result['spearman_rho'] = float(_rho(x, y))
    result['kendall_tau_ci'], undefined_tau = _interval(
        x, y, _tau, n_resamples, confidence, seed)
    result['spearman_rho_ci'], undefined_rho = _interval(
        x, y, _rho, n_resamples, confidence, seed)
    undefined = max(undefined_tau, undefined_rho)
    if undefined:
        result['note'] = (
            f'{undefined} of {n_resamples} bootstrap resamples hold one '
            f'{labels[0]} or one {labels[1]} only; they are left out of the '
            'interval' + (' (too many: no interval)' if math.isnan(
                result['kendall_tau_ci'][0]) else ''))
    return result


def trained_rank(proxy, accuracy):
    """1-based rank by ``accuracy`` (1 = most accurate; ties share the best
    rank) of the architecture with the highest ``proxy`` (the first of
    equal ones), or None for an empty sample."""
    from scipy.stats import rankdata
    proxy = np.asarray(proxy, dtype=float)
    accuracy = np.asarray(accuracy, dtype=float)
    if not len(proxy):
        return None
    ranks = rankdata(-accuracy, method='min')
    return int(ranks[int(np.argmax(proxy))])


def top_k_overlap(proxy, accuracy, k):
    """How many of the ``k`` architectures with the highest ``proxy`` are
    among the ``k`` most accurate (ties broken by position, first wins)."""
    proxy = np.asarray(proxy, dtype=float)
    accuracy = np.asarray(accuracy, dtype=float)
    k = min(int(k), len(proxy))
    by_proxy = set(np.argsort(-proxy, kind='stable')[:k].tolist())
    by_accuracy = set(np.argsort(-accuracy, kind='stable')[:k].tolist())
    return len(by_proxy & by_accuracy)
