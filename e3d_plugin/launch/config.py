"""Loading a config and merging ``--cfg-options`` into it, every mistake
on one line."""
import os
import os.path as osp

from .config_types import check_config_types
from .errors import LaunchError, _short, error_line
from .options import _check_options


def load_config(path, cfg_options=None):
    """Load an mmengine config and merge ``--cfg-options`` into it.

    Every mistake (a missing file, a directory, a syntax error, a failing
    import, a malformed or misplaced option, a setting of the wrong type)
    raises :class:`LaunchError` with one line.
    """
    from mmengine.config import Config
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise LaunchError(f'the config must be a file path, got '
                          f'{_short(path)}')
    path = os.fspath(path)
    if osp.isdir(path):
        raise LaunchError(
            f"config '{path}' is a directory; give a config file (.py) in "
            'it')
    if not osp.isfile(path):
        raise LaunchError(f"config file '{path}' does not exist")
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as e:
        raise LaunchError(
            f"config '{path}' has a syntax error at line {e.lineno}: "
            f'{e.msg}') from None
    except ImportError as e:
        cause = e.__cause__ if isinstance(e.__cause__, ImportError) else e
        raise LaunchError(
            f"cannot load config '{path}': {error_line(cause)}") from None
    except Exception as e:  # mmengine raises many kinds; name the file
        message = str(e).strip().splitlines()[-1] if str(e).strip() else ''
        raise LaunchError(
            f"cannot load config '{path}': {type(e).__name__}: "
            f'{message}') from None
    cfg = merge_cfg_options(cfg, cfg_options)
    if cfg_options and any(str(key).split('.')[0] == 'custom_imports'
                           for key in cfg_options):
        _import_custom_modules(cfg)
    return cfg


def _import_custom_modules(cfg):
    """Import ``custom_imports`` given by ``--cfg-options``: mmengine
    imports a config's own ones only while reading the file."""
    from mmengine.utils import import_modules_from_strings
    custom = cfg.get('custom_imports')
    if not isinstance(custom, dict):
        raise LaunchError('--cfg-options: custom_imports must be a dict '
                          'with imports=[module, ...]')
    try:
        import_modules_from_strings(
            **{k: v for k, v in custom.items()
               if k in ('imports', 'allow_failed_imports')})
    except (ImportError, TypeError) as e:
        raise LaunchError(
            f'--cfg-options custom_imports: {error_line(e)}') from None


def merge_cfg_options(cfg, cfg_options, known_keys_only=False):
    """Merge ``--cfg-options`` into the loaded ``cfg`` and check the types
    of its settings; :class:`LaunchError` with one line for an option that
    cannot land or, with ``known_keys_only``, whose first key the config
    lacks (mmengine would add it silently: most likely a misspelt key)."""
    if cfg_options:
        if not isinstance(cfg_options, dict):
            raise LaunchError(
                '--cfg-options must be KEY=VALUE pairs, got '
                f'{_short(cfg_options)}')
        if known_keys_only:
            unknown = sorted({str(key).split('.')[0] for key in cfg_options}
                             - set(cfg.keys()))
            if unknown:
                raise LaunchError(
                    f"--cfg-options: the config has no key '{unknown[0]}'; "
                    f"its keys are {', '.join(sorted(cfg.keys()))}")
        _check_options(cfg, cfg_options)
        try:
            cfg.merge_from_dict(cfg_options)
        except (TypeError, KeyError, ValueError, AttributeError) as e:
            raise LaunchError(
                f'--cfg-options: cannot merge {_short(cfg_options)}: '
                f'{error_line(e)}') from None
    check_config_types(cfg)
    return cfg
