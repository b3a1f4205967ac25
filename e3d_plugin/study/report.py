"""The report of a rank study: per-architecture accuracies, rank
correlations of every proxy with the mean final validation accuracy (the
whole sample and the near-budget band), the seed-noise ceiling, a CSV, a
table and a plot. When the sample holds motion-blind structures (a temporal
receptive field of one frame: :func:`~e3d_plugin.units.
temporal_receptive_field`), every correlation and the ceiling are also
given without them (``seeing`` and ``band_seeing``): such structures sit at
chance on a benchmark told apart over time, which a proxy can rank right
for the wrong reason.

How to read it: a proxy's Kendall tau / Spearman rho say how well ranking
architectures by the proxy reproduces their ranking by trained accuracy.
The seed-noise ceiling is the same correlation between two training seeds of
the same architectures: the trained ranking itself is not more repeatable
than that, so no proxy can be expected above it. In the band (structures
near the FLOPs budget, where a search actually chooses) FLOPs barely vary,
and a useful score has to beat FLOPs there.
"""
import csv
import json
import math
import os
import os.path as osp

import numpy as np

from ..fileio import atomic_write
from ..structure import Structure
from ..units import temporal_receptive_field
from .proxies import plan_proxies
from .results import finished_runs
from .stats import rank_correlation, top_k_overlap, trained_rank

#: Groups of a report beside the whole sample: name -> (in the band only,
#: motion-blind structures left out).
GROUPS = {'band': (True, False), 'seeing': (False, True),
          'band_seeing': (True, True)}


def temporal_field(arch):
    """Temporal receptive field (frames) of a plan architecture."""
    return temporal_receptive_field(Structure.from_dicts(arch['structure']))


def _group(archs, name):
    """The architectures of ``archs`` in group ``name`` ('all' or one of
    :data:`GROUPS`)."""
    if name == 'all':
        return list(archs)
    band_only, seeing_only = GROUPS[name]
    return [a for a in archs if (a['in_band'] or not band_only)
            and (a['temporal_rf'] > 1 or not seeing_only)]

#: Report names of the proxies.
PROXY_LABELS = {
    'stentr_score': 'STEntr-Score',
    'stentr_score_norefine': 'STEntr (refine=False)',
    'stentr_score_coverage': 'STEntr x coverage',
    'flops': 'FLOPs',
    'params': 'params',
    'layers': 'layers',
    'random_score': 'RandomScore',
    'zen_score': 'Zen-Score',
    'naswot': 'NASWOT',
    'synflow': 'SynFlow',
    'grad_norm': 'grad-norm',
    'zico': 'ZiCo',
}


def run_accuracy(record, final_epochs=1):
    """A finished run's accuracy: the mean of its last ``final_epochs``
    validations (its ``final`` for 1, or when the curve is shorter)."""
    curve = record.get('curve') or []
    if final_epochs <= 1 or len(curve) < final_epochs:
        return record['final']
    return float(np.mean(curve[-final_epochs:]))


def _accuracies(plan, records, final_epochs=1):
    """Per-architecture ``acc`` dicts ``{seed: {final, best}}`` of the
    finished runs (``final``: see :func:`run_accuracy`)."""
    done = finished_runs(records)
    acc = {arch['id']: {} for arch in plan['archs']}
    for (arch_id, seed), record in sorted(done.items(),
                                          key=lambda kv: str(kv[0])):
        if arch_id in acc:
            acc[arch_id][str(seed)] = dict(
                final=run_accuracy(record, final_epochs),
                best=record['best'])
    return acc


def make_report(plan, records, n_resamples=2000, seed=0, notes=(),
                final_epochs=1):
    """The report dict of a plan and its result records.

    Returns:
        dict: ``archs`` (each plan record with ``acc`` per seed, ``mean`` and
        ``std`` of the final accuracy over its seeds), ``correlations``
        (per proxy the statistics of :func:`rank_correlation` for the whole
        sample, plus ``band`` for the near-budget band and
        ``top_rank``, the trained rank of the architecture the proxy puts
        first, and ``top_k_overlap``), ``seed_ceiling`` (seed 0 vs seed 1
        final accuracy, same keys, with ``band``), ``top_k``, ``num_runs``,
        ``runs_done``, ``settings``, ``budgets``, ``band_flops``,
        ``proxy_ms`` (the mean milliseconds per architecture of each
        network proxy) and ``notes``. Every proxy the plan holds for all
        its architectures is reported (see
        :func:`~e3d_plugin.study.proxies.plan_proxies`). With
        ``final_epochs`` K > 1 a run's final accuracy is the mean of its
        last K validations. The seed-noise ceiling compares the study's
        first two training seeds.
    """
    acc = _accuracies(plan, records, final_epochs)
    seeds = plan['settings']['seeds']
    first = plan['settings'].get('first_seed', 0)
    pair = (str(first), str(first + 1))
    archs = []
    for arch in plan['archs']:
        finals = [acc[arch['id']][key]['final']
                  for key in sorted(acc[arch['id']], key=int)]
        archs.append(dict(
            arch, acc=acc[arch['id']], temporal_rf=temporal_field(arch),
            mean=float(np.mean(finals)) if finals else math.nan,
            std=float(np.std(finals, ddof=1)) if len(finals) > 1 else (
                0.0 if finals else math.nan)))
    trained = [a for a in archs if not math.isnan(a['mean'])]
    k = max(1, round(len(trained) / 4))
    # the groups without motion-blind structures only when there are some
    names = ['all', 'band'] + (['seeing', 'band_seeing'] if any(
        a['temporal_rf'] == 1 for a in archs) else [])
    correlations = {}
    proxies = plan_proxies(plan)
    for proxy in proxies:
        entry = {}
        for name in names:
            group = _group(trained, name)
            values = [a['proxies'][proxy] for a in group]
            means = [a['mean'] for a in group]
            stats = rank_correlation(values, means, n_resamples=n_resamples,
                                     seed=seed)
            stats['top_rank'] = trained_rank(values, means)
            stats['top_k_overlap'] = top_k_overlap(
                values, means, min(k, len(group))) if group else None
            if name == 'all':
                entry.update(stats)
            else:
                entry[name] = stats
        correlations[proxy] = entry
    ceiling = {}
    for name in names:
        both = [a for a in _group(archs, name) if pair[0] in a['acc'] and pair[1] in
                a['acc']]
        stats = rank_correlation([a['acc'][pair[0]]['final'] for a in both],
                                 [a['acc'][pair[1]]['final'] for a in both],
                                 n_resamples=n_resamples, seed=seed,
                                 labels=(f'seed {pair[0]} accuracy',
                                         f'seed {pair[1]} accuracy'))
        if seeds < 2:
            stats['note'] = 'needs --seeds 2 or more'
        if name == 'all':
            ceiling.update(stats)
        else:
            ceiling[name] = stats
    runs_done = sum(len(a['acc']) for a in archs)
    return dict(
        settings=plan['settings'],
        budgets=plan['budgets'],
        image_size=plan['image_size'],
        frames=plan['frames'],
        band_flops=plan['band_flops'],
        accuracy=('mean final validation ' if final_epochs <= 1 else
                  f'mean of the last {final_epochs} validations, '
                  'averaged over seeds: ') + plan['settings']['metric'],
        final_epochs=final_epochs,
        num_runs=len(archs) * seeds,
        runs_done=runs_done,
        top_k=k,
        archs=archs,
        correlations=correlations,
        seed_ceiling=ceiling,
        proxy_ms=proxy_cost(plan, proxies),
        notes=list(plan.get('notes', [])) + list(notes))


def proxy_cost(plan, proxies):
    """Mean milliseconds per architecture of each proxy of ``proxies`` whose
    cost the plan records (the network proxies)."""
    cost = {}
    for name in proxies:
        times = [arch.get('proxy_ms', {}).get(name) for arch in plan['archs']]
        if times and all(isinstance(t, (int, float)) for t in times):
            cost[name] = float(np.mean(times))
    return cost


def _json_ready(value):
    """NaN and infinities become null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 'nan'
    return f'{value:.{digits}f}'


def _with_interval(stats, key):
    low, high = stats[f'{key}_ci']
    return f'{_fmt(stats[key])} [{_fmt(low, 2)}, {_fmt(high, 2)}]'


def format_table(report):
    """The report's table as text: one row per proxy and the ceiling."""
    trained = [a for a in report['archs'] if not math.isnan(a['mean'])]
    band = [a for a in trained if a['in_band']]
    head = (f"{'proxy':<23}{'tau (all)':>22}{'rho (all)':>22}"
            f"{'tau (band)':>22}{'rho (band)':>22}"
            f"{'top rank':>10}{'top-k':>7}")
    lines = [
        f"rank correlation with {report['accuracy']}: "
        f"{len(trained)} architectures ({len(band)} in the band, FLOPs >= "
        f"{report['band_flops']:.4g}), {report['runs_done']}/"
        f"{report['num_runs']} runs; 95% bootstrap intervals", head,
        '-' * len(head)]
    rows = [(PROXY_LABELS.get(name, name), stats)
            for name, stats in report['correlations'].items()]
    rows.append(('seed-noise ceiling', report['seed_ceiling']))
    for label, stats in rows:
        top = stats.get('top_rank')
        top = '-' if top is None else f'{top}/{len(trained)}'
        overlap = stats.get('top_k_overlap')
        overlap = '-' if overlap is None else f"{overlap}/{report['top_k']}"
        lines.append(
            f'{label:<23}{_with_interval(stats, "kendall_tau"):>22}'
            f'{_with_interval(stats, "spearman_rho"):>22}'
            f'{_with_interval(stats["band"], "kendall_tau"):>22}'
            f'{_with_interval(stats["band"], "spearman_rho"):>22}'
            f'{top:>10}{overlap:>7}')
    if 'seeing' in report['seed_ceiling']:
        seeing = _group(trained, 'seeing')
        lines.append(
            f'without the {len(trained) - len(seeing)} motion-blind '
            f'structures (temporal receptive field 1 frame): {len(seeing)} '
            f"architectures, {len(_group(seeing, 'band'))} in the band")
        lines.append(f"{'':<23}{'tau (seeing)':>22}{'rho (seeing)':>22}"
                     f"{'tau (band)':>22}{'rho (band)':>22}")
        for label, stats in rows:
            lines.append(
                f'{label:<23}'
                f'{_with_interval(stats["seeing"], "kendall_tau"):>22}'
                f'{_with_interval(stats["seeing"], "spearman_rho"):>22}'
                f'{_with_interval(stats["band_seeing"], "kendall_tau"):>22}'
                f'{_with_interval(stats["band_seeing"], "spearman_rho"):>22}')
    grouped = {}  # one line for a note that several rows share
    for label, stats in rows:
        for part in ('all', 'band', 'seeing', 'band_seeing'):
            values = stats if part == 'all' else stats.get(part, {})
            if values.get('note'):
                grouped.setdefault((part, values['note']), []).append(label)
    notes = [f"{', '.join(labels)} ({part}): {note}"
             for (part, note), labels in grouped.items()]
    lines.extend(f'note: {note}' for note in report['notes'] + notes)
    cost = report.get('proxy_ms') or {}
    if cost:
        lines.append('cost per architecture: ' + ', '.join(
            f'{PROXY_LABELS.get(name, name)} {ms:.0f} ms'
            for name, ms in cost.items()))
    lines.append('top rank: trained rank of the architecture the proxy puts '
                 f"first; top-k: overlap of the {report['top_k']} best by "
                 'proxy and by accuracy (whole sample)')
    return '\n'.join(lines)


def write_csv(report, path):
    """One row per architecture: role, band, proxies, accuracy per seed."""
    first = report['settings'].get('first_seed', 0)
    seeds = range(first, first + report['settings']['seeds'])
    proxies = list(report['correlations'])
    fields = ['id', 'role', 'in_band', 'temporal_rf', *proxies]
    for seed in seeds:
        fields += [f'seed{seed}_final', f'seed{seed}_best']
    fields += ['mean_final', 'std_final']
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for arch in report['archs']:
            row = [arch['id'], arch['role'], int(arch['in_band']),
                   arch['temporal_rf']]
            row += [arch['proxies'][p] for p in proxies]
            for seed in seeds:
                acc = arch['acc'].get(str(seed))
                row += [acc['final'], acc['best']] if acc else ['', '']
            row += ['' if math.isnan(arch['mean']) else arch['mean'],
                    '' if math.isnan(arch['std']) else arch['std']]
            writer.writerow(row)


def plot_report(report, path):
    """Mean final accuracy against each proxy, seed spread (min to max) as
    error bars, the band in its own colour; one panel per proxy."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(report['correlations'])
    columns = 3
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns,
                                                     3.4 * rows), dpi=100,
                             squeeze=False)
    trained = [a for a in report['archs'] if not math.isnan(a['mean'])]
    for ax, name in zip(axes.flat, names):
        for in_band, colour, label in ((False, 'tab:blue', 'below band'),
                                       (True, 'tab:orange', 'band')):
            group = [a for a in trained if a['in_band'] == in_band]
            if not group:
                continue
            x = [a['proxies'][name] for a in group]
            finals = [[s['final'] for s in a['acc'].values()] for a in group]
            y = [a['mean'] for a in group]
            low = [m - min(f) for m, f in zip(y, finals)]
            high = [max(f) - m for m, f in zip(y, finals)]
            ax.errorbar(x, y, yerr=[low, high], fmt='o', ms=4, capsize=2,
                        color=colour, label=label)
        stats = report['correlations'][name]
        ax.set_title(f"{PROXY_LABELS.get(name, name)}: tau "
                     f"{_fmt(stats['kendall_tau'], 2)} (band "
                     f"{_fmt(stats['band']['kendall_tau'], 2)})",
                     fontsize=9)
        ax.set_xlabel(PROXY_LABELS.get(name, name))
        ax.set_ylabel('val top-1')
        if name in ('flops', 'params'):
            ax.ticklabel_format(axis='x', style='sci', scilimits=(0, 0))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis('off')
    axes.flat[0].legend(fontsize=8)
    ceiling = report['seed_ceiling']
    fig.suptitle(f"rank study: {len(trained)} architectures; seed-noise "
                 f"ceiling tau {_fmt(ceiling['kendall_tau'], 2)}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report, work_dir):
    """``rank_study.json``, ``rank_study.csv`` and ``rank_study.png`` in
    ``work_dir``; return their paths."""
    os.makedirs(work_dir, exist_ok=True)
    paths = {ext: osp.join(work_dir, f'rank_study.{ext}')
             for ext in ('json', 'csv', 'png')}
    atomic_write(paths['json'], lambda f: json.dump(
        _json_ready(report), f, indent=1, allow_nan=False))
    write_csv(report, paths['csv'])
    plot_report(report, paths['png'])
    return paths
