"""Make the mmengine / mmcv / mmaction2 stack import cleanly on a fresh
install, without editing anything under site-packages.

The gaps of the published wheels are bridged here, each only when it is
really there:

* the mmaction2 1.2.0 wheel imports ``mmaction.models.localizers.drn`` but
  does not ship it: an empty stand-in module is registered so that
  ``import mmaction.models`` succeeds (building a ``DRN`` model raises a clear
  error instead);
* the same wheel imports ``importlib_metadata`` without declaring it: the
  plugin depends on it, and falls back to the standard ``importlib.metadata``;
* mmengine 0.10 loads checkpoints with ``torch.load``'s default, which torch
  2.6 made ``weights_only=True``: its own checkpoints (with the message hub)
  no longer load. The safe reader is kept and told the few types those
  checkpoints hold (:mod:`e3d_plugin.checkpoint`); anything else is refused
  with one line (``E3D_TRUST_CHECKPOINTS=1`` opts in for a trusted file);
* mmengine finds the configs of ``mmaction::`` bases through
  ``pkg_resources``, which setuptools 81 and newer no longer ship: the plugin
  pins ``setuptools<81`` and, where ``pkg_resources`` is missing anyway,
  replaces mmengine's two package look-ups with ``importlib.metadata`` ones;
* mmengine 0.10 prints a config (``Config.pretty_text``, used by ``Runner``
  for its log and the dumped config) as ``dict(key=value)`` whenever every
  key is an identifier, and ``in`` is one but also a keyword: a config with
  an in-line structure (``structure=[dict(kind=..., **{'in': 3, ...})]``)
  fails with "Failed to format the config file". Where mmengine's text does
  not parse, the config is written with literal ``{...}`` dicts instead;
* mmaction2 1.2.0 imports its multimodal models (VindLU) whenever
  ``transformers >= 4.28`` is installed, and transformers 5 no longer has
  names they import (``apply_chunking_to_forward``), so ``import
  mmaction.models`` fails beside it. When the imports those modules make
  from ``transformers`` do not resolve, a stand-in multimodal module
  registers the VindLU names as placeholders that raise a clear error when
  built, as mmaction2 does when transformers is missing;
* mmengine's ``compile=True`` hands the whole ``train_step`` to
  ``torch.compile``, optimizer update included, and dynamo (torch 2.13)
  fails inside the optimizer's step over mmengine's parameter groups. The
  update (``OptimWrapper.update_params``: backward, step, zero_grad) is
  left to eager PyTorch (``torch.compiler.disable``): the forward and the
  loss are still compiled, and so their backward (AOTAutograd compiles it
  with the forward); outside ``torch.compile`` nothing changes.

:func:`apply` is idempotent and cheap; ``import e3d_plugin`` calls it first.
"""
import importlib.metadata
import importlib.util
import os.path as osp
import sys
import types
import warnings

_APPLIED = False
_DRN = 'mmaction.models.localizers.drn'


def _bridge_importlib_metadata():
    if importlib.util.find_spec('importlib_metadata') is None:
        sys.modules['importlib_metadata'] = importlib.metadata


class DRN:
    """Stand-in for mmaction2's ``DRN`` localizer, absent from its wheel."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            'DRN is not available: the mmaction2 1.2.0 wheel does not ship '
            '`mmaction.models.localizers.drn`. Install mmaction2 from source '
            'to use it.')


_MULTIMODAL = 'mmaction.models.multimodal'
_MULTIMODAL_NAMES = ('VindLUVQA', 'VindLURetrievalMC', 'VindLURetrieval')


def _transformers_imports(folder):
    """The ``import transformers...`` / ``from transformers... import``
    statements at the top level of the modules in ``folder``."""
    import ast
    import glob
    statements = []
    for path in sorted(glob.glob(osp.join(folder, '*.py'))):
        try:
            with open(path, encoding='utf-8') as f:
                tree = ast.parse(f.read(), path)
        except (OSError, SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and not node.level and (
                    node.module or '').split('.')[0] == 'transformers':
                statements.append(node)
            elif isinstance(node, ast.Import) and any(
                    alias.name.split('.')[0] == 'transformers'
                    for alias in node.names):
                statements.append(node)
    return statements


def unresolved_transformers_import(folder):
    """The first transformers import of the modules in ``folder`` that
    fails here, as ``(statement text, error)``; None when all resolve."""
    import ast
    for node in _transformers_imports(folder):
        code = ast.unparse(node)
        try:
            exec(compile(code, '<transformers probe>', 'exec'), {})
        except Exception as e:  # ImportError, or a broken install
            return code, f'{type(e).__name__}: {e}'
    return None


class MultimodalUnavailable:
    """Stand-in for mmaction2's multimodal (VindLU) models when the
    installed transformers does not provide what they import."""

    reason = ''

    def __init__(self, *args, **kwargs):
        raise ImportError(
            'mmaction2 1.2.0\'s multimodal models (VindLU) do not import '
            f'with the installed transformers ({self.reason}); install '
            '"transformers>=4.28,<5" to use them. The rest of mmaction2 and '
            'e3d_plugin work without them.')


def _bridge_multimodal():
    if _MULTIMODAL in sys.modules or 'mmaction.models' in sys.modules:
        return
    if importlib.util.find_spec('transformers') is None:
        return  # mmaction2 registers its own placeholders
    spec = importlib.util.find_spec('mmaction')
    if spec is None or not spec.submodule_search_locations:
        return
    root = list(spec.submodule_search_locations)[0]
    folder = osp.join(root, 'models', 'multimodal', 'vindlu')
    if not osp.isdir(folder):
        return
    from mmaction.utils.dependency import WITH_MULTIMODAL
    if not WITH_MULTIMODAL:
        return  # mmaction2 does not import them
    failure = unresolved_transformers_import(folder)
    if failure is None:
        return
    statement, error = failure
    from mmaction.registry import MODELS
    module = types.ModuleType(_MULTIMODAL)
    module.__path__ = []
    module.__doc__ = ('Stand-in created by e3d_plugin: the installed '
                      'transformers breaks mmaction2\'s multimodal models.')
    module.__all__ = []
    reason = f'`{statement}` fails: {error}'
    for name in _MULTIMODAL_NAMES:
        stand_in = type(name, (MultimodalUnavailable, ), dict(reason=reason))
        MODELS.register_module(name=name, module=stand_in, force=True)
    sys.modules[_MULTIMODAL] = module


def _bridge_drn():
    if _DRN in sys.modules:
        return
    spec = importlib.util.find_spec('mmaction')
    if spec is None or not spec.submodule_search_locations:
        return
    root = list(spec.submodule_search_locations)[0]
    if osp.isdir(osp.join(root, 'models', 'localizers', 'drn')):
        return
    package = types.ModuleType(_DRN)
    package.__path__ = []
    package.__doc__ = 'Stand-in created by e3d_plugin: missing from the wheel.'
    module = types.ModuleType(_DRN + '.drn')
    module.DRN = DRN
    package.drn = module
    sys.modules[_DRN] = package
    sys.modules[_DRN + '.drn'] = module


def _dist_location(package):
    """Return the site directory holding ``package`` or None."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    return str(dist.locate_file(''))


def is_installed(package):
    """``mmengine.utils.is_installed`` without ``pkg_resources``."""
    if _dist_location(package) is not None:
        return True
    spec = importlib.util.find_spec(package)
    return spec is not None and spec.origin is not None


def package2module(package):
    """Top-level module of distribution ``package`` (``mmaction2`` ->
    ``mmaction``), read from its metadata."""
    dist = importlib.metadata.distribution(package)
    top_level = dist.read_text('top_level.txt')
    if top_level and top_level.split():
        return top_level.split()[0]
    for path in dist.files or ():
        if path.name == '__init__.py' and len(path.parts) == 2:
            return path.parts[0]
    raise ValueError(f'can not infer the module name of {package}')


def get_installed_path(package):
    """``mmengine.utils.get_installed_path`` without ``pkg_resources``."""
    location = _dist_location(package)
    if location is None:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise importlib.metadata.PackageNotFoundError(package)
        return osp.dirname(spec.origin)
    possible = osp.join(location, package)
    if osp.exists(possible):
        return possible
    return osp.join(location, package2module(package))


def _quiet_known_warnings():
    # Noise for mmaction2 users: the deprecation notice of pkg_resources, and
    # mmcv-lite's notice that it has no compiled deformable attention (no
    # video recognizer uses it).
    warnings.filterwarnings(
        'ignore', message='pkg_resources is deprecated', category=UserWarning)
    warnings.filterwarnings(
        'ignore', message='Fail to import ``MultiScaleDeformableAttention``',
        category=UserWarning)


def _bridge_pkg_resources():
    if importlib.util.find_spec('pkg_resources') is not None:
        return
    import mmengine.config.config as config_module
    import mmengine.utils as utils
    import mmengine.utils.package_utils as package_utils
    for module in (package_utils, utils, config_module):
        module.is_installed = is_installed
        module.get_installed_path = get_installed_path


def _bridge_checkpoint_loading():
    from .checkpoint import register_local_loader
    register_local_loader()


def _config_literal(cfg_dict):
    """A config as Python source made of literals (``{'in': 3}``), one
    assignment per top-level key; it loads back to the same values."""
    import pprint
    return '\n'.join(
        f'{key} = {pprint.pformat(value, width=79, sort_dicts=False)}'
        for key, value in cfg_dict.items()) + '\n'


def _bridge_config_keywords():
    from mmengine.config import Config
    original = Config.pretty_text
    if getattr(original.fget, 'e3d_keyword_safe', False):
        return

    def pretty_text(self):
        try:
            return original.fget(self)
        except SyntaxError:
            return _config_literal(self.to_dict())

    pretty_text.e3d_keyword_safe = True
    pretty_text.__doc__ = original.__doc__
    Config.pretty_text = property(pretty_text)


def _bridge_compiled_update():
    import torch
    from mmengine.optim import OptimWrapper, OptimWrapperDict
    compiler = getattr(torch, 'compiler', None)
    if compiler is None or not hasattr(compiler, 'disable'):
        return  # torch < 2.1: mmengine's compile needs torch 2 anyway
    for cls in (OptimWrapper, OptimWrapperDict):
        original = cls.__dict__['update_params']
        if getattr(original, 'e3d_eager_update', False):
            continue
        eager = compiler.disable(original)
        eager.e3d_eager_update = True
        cls.update_params = eager


def apply():
    """Bridge the gaps of the installed stack (safe to call repeatedly)."""
    global _APPLIED
    if _APPLIED:
        return
    _quiet_known_warnings()
    _bridge_importlib_metadata()
    _bridge_drn()
    _bridge_multimodal()
    _bridge_pkg_resources()
    _bridge_checkpoint_loading()
    _bridge_config_keywords()
    _bridge_compiled_update()
    _APPLIED = True
