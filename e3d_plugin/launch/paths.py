"""The files a config names: its datasets' paths, work dirs, output files."""
import os
import os.path as osp

from .errors import LaunchError, _short, error_line


def _as_path(where, value):
    if not isinstance(value, (str, os.PathLike)):
        raise LaunchError(
            f'{where} must be a path (a str), got {_short(value)} '
            f'({type(value).__name__})')
    return os.fspath(value)


def _dataset_paths(dataset, where='dataset'):
    """(key, path) pairs a dataset config needs on disk."""
    if dataset is None:
        return []
    if not isinstance(dataset, dict):
        raise LaunchError(
            f'{where} must be a dict (the dataset config), got '
            f'{_short(dataset)}')
    if dataset.get('dataset') is not None:  # RepeatDataset and friends
        return [(f'dataset.{k}', p) for k, p in _dataset_paths(
            dataset['dataset'], f'{where}.dataset')]
    if dataset.get('datasets') is not None:  # ConcatDataset
        items = dataset['datasets']
        if not isinstance(items, (list, tuple)):
            raise LaunchError(f'{where}.datasets must be a list of dataset '
                              f'configs, got {_short(items)}')
        return [(f'datasets.{i}.{k}', p) for i, item in enumerate(items)
                for k, p in _dataset_paths(item, f'{where}.datasets.{i}')]
    root = dataset.get('data_root') or ''
    root = _as_path(f'{where}.data_root', root)
    paths = []
    ann_file = dataset.get('ann_file')
    if ann_file:
        ann_file = _as_path(f'{where}.ann_file', ann_file)
        paths.append(('ann_file', ann_file if osp.isabs(ann_file) or not root
                      else osp.join(root, ann_file)))
    prefix = dataset.get('data_prefix') or {}
    if not isinstance(prefix, dict):
        raise LaunchError(
            f"{where}.data_prefix must be a dict such as dict(video="
            f"'data/videos'), got {_short(prefix)}")
    for key, value in prefix.items():
        if value:
            value = _as_path(f'{where}.data_prefix.{key}', value)
            paths.append((f'data_prefix.{key}', value if osp.isabs(value) or
                          not root else osp.join(root, value)))
    return paths


def check_data(cfg, splits=('train', 'val', 'test')):
    """Raise :class:`LaunchError` when a dataset's files are missing (or
    its paths are not paths)."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        if not isinstance(loader, dict):
            raise LaunchError(
                f'{split}_dataloader must be a dict (or None), got '
                f'{_short(loader)}')
        for key, path in _dataset_paths(loader.get('dataset'),
                                        f'{split}_dataloader.dataset'):
            if not osp.exists(path):
                hint = ''
                if 'synthetic_motion' in path:
                    hint = ('; generate it with python '
                            'tools/data/synthetic_motion.py --out '
                            'data/synthetic_motion')
                raise LaunchError(
                    f"{split}_dataloader.dataset.{key}: '{path}' does not "
                    f'exist{hint}')


def prepare_work_dir(path, option='work_dir', fix='choose another work dir'):
    """Create the work dir ``path`` now (so an unusable one is reported
    before anything is built); return it."""
    path = _as_path(option, path)
    if not path:
        raise LaunchError(f'{option} must not be empty')
    if osp.exists(path) and not osp.isdir(path):
        raise LaunchError(
            f"{option} '{path}' is a file, not a directory; {fix}")
    try:
        os.makedirs(path, exist_ok=True)
    except (OSError, ValueError) as e:
        reason = getattr(e, 'strerror', None) or error_line(e)
        raise LaunchError(
            f"{option} '{path}' cannot be created ({reason}); {fix}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise LaunchError(f"{option} '{path}' is not writable; {fix}")
    return path


def prepare_output_file(path, option):
    """Create the folder of output file ``path`` now, so that a result
    computed at the end of a run is not lost to a missing folder."""
    path = _as_path(option, path)
    if osp.isdir(path):
        raise LaunchError(f"{option} '{path}' is a directory; give a file "
                          'name')
    prepare_work_dir(osp.dirname(osp.abspath(path)), f'{option} folder',
                     'choose another file name')
    return path


def _plain(option, path):
    """Refuse a path holding a control character (a newline would split
    the one-line messages that name it)."""
    if any(ord(char) < 32 or char == '\x7f' for char in path):
        raise LaunchError(f'{option} {_short(path)} holds a control '
                          'character; choose a plain name')


def check_input_file(path, what):
    """Return ``path`` if it is an existing, readable regular file, else
    raise :class:`LaunchError` saying what it is instead (empty, missing,
    a directory, a device); ``what`` names it (``checkpoint``, ...)."""
    path = _as_path(what, path)
    if not path:
        raise LaunchError(f'{what} path is empty')
    _plain(what, path)
    if osp.isdir(path):
        raise LaunchError(f"{what} '{path}' is a directory, not a file")
    if not osp.exists(path):
        raise LaunchError(f"{what} '{path}' does not exist")
    if not osp.isfile(path):
        raise LaunchError(f"{what} '{path}' is not a regular file")
    if not os.access(path, os.R_OK):
        raise LaunchError(f"{what} '{path}' is not readable")
    return path


def same_file(a, b):
    """Whether paths ``a`` and ``b`` name the same file: the same real
    path (symbolic links followed) or, for existing files, the same inode
    (hard links)."""
    if osp.realpath(a) == osp.realpath(b):
        return True
    try:
        return osp.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_output_path(path, option, inputs=(), folder=False):
    """Return the output ``path`` (a file, or with ``folder=True`` a
    folder) if it can be written, without creating anything; else raise
    :class:`LaunchError`: it is empty or holds a control character, it is a
    directory (a file for a folder output), it names one of ``inputs``
    (``(what, path)`` pairs: the run would overwrite what it reads), a file
    stands where a folder above it should be, or the nearest existing
    folder above it is not writable or a name is too long."""
    path = _as_path(option, path)
    noun = 'folder' if folder else 'file name'
    if not path:
        raise LaunchError(f'{option} must not be empty')
    _plain(option, path)
    if folder:
        if osp.exists(path) and not osp.isdir(path):
            raise LaunchError(f"{option} '{path}' is a file, not a folder; "
                              f'choose another {noun}')
    else:
        if osp.isdir(path):
            raise LaunchError(f"{option} '{path}' is a directory; give a "
                              'file name')
        if path.endswith(('/', os.sep)):
            raise LaunchError(f"{option} '{path}' ends with '/'; give a "
                              'file name')
        if osp.lexists(path) and not osp.isfile(path):
            raise LaunchError(f"{option} '{path}' is not a regular file; "
                              f'choose another {noun}')
    for what, other in inputs:
        if other is not None and other != '' and same_file(path, other):
            raise LaunchError(
                f"{option} '{path}' is the {what} this run reads; choose "
                f'another {noun}')
    target = osp.abspath(path)
    existing = target if folder else osp.dirname(target)
    while not osp.exists(existing):
        existing = osp.dirname(existing)
    if not osp.isdir(existing):
        raise LaunchError(f"{option} '{path}' cannot be created: "
                          f"'{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise LaunchError(f"{option} '{path}' cannot be written: the "
                          f"folder '{existing}' is not writable")
    try:
        longest = os.pathconf(existing, 'PC_NAME_MAX')
    except (OSError, ValueError):
        longest = 255
    for part in osp.relpath(target, existing).split(os.sep):
        if len(part.encode('utf-8', 'surrogateescape')) > longest:
            raise LaunchError(f'{option} {_short(path)}: a name is longer '
                              f'than {longest} bytes; choose a shorter one')
    return path
