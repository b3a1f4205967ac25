"""Helpers shared by the tests (tests never import each other)."""
import importlib.util
import os.path as osp

import pytest

from e3d_plugin.nas import evolution as evolution_module

#: The repository root, found from this file (never a machine path).
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: The published E3D structures shipped with the package.
REFERENCE_DIR = osp.join(ROOT, 'e3d_plugin', 'presets')


def load_tool(name):
    """The module of ``tools/<name>.py`` (or a path), loaded from its file."""
    path = name if osp.isabs(name) else osp.join(ROOT, 'tools', name + '.py')
    spec = importlib.util.spec_from_file_location(
        'tool_' + osp.splitext(osp.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_search_tool():
    """``tools/search.py`` as a module."""
    return load_tool('search')


def analyze_main():
    """``main`` of ``tools/analyze.py``."""
    return load_tool('analyze').main


class Killed(Exception):
    """Stands for the search process being killed."""


def run_capturing_population(search, monkeypatch):
    """Run ``search``; return its result and its final population (the
    heap entries ``(score, order, structure, cost)``)."""
    seen = {}
    original = evolution_module.EntropyEvolution.result

    def capture(self, heap, *args):
        seen['heap'] = list(heap)
        return original(self, heap, *args)

    monkeypatch.setattr(evolution_module.EntropyEvolution, 'result', capture)
    result = search.run()
    return result, seen['heap']


def kill_after_first_checkpoint(search, monkeypatch):
    """Run ``search`` until it has written its first checkpoint, then raise
    :class:`Killed` as a kill would stop it; return the candidates done at
    that checkpoint."""
    original = search._save
    calls = []

    def save_then_die(state):
        original(state)
        calls.append(state['done'])
        raise Killed()

    monkeypatch.setattr(search, '_save', save_then_die)
    with pytest.raises(Killed):
        search.run()
    return calls
