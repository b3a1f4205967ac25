"""Safe loading of mmengine checkpoints (``.pth``) under torch >= 2.6.

torch 2.6 made ``torch.load(..., weights_only=True)`` the default: it
unpickles only tensors, containers and plain values, so a crafted file cannot
run code. mmengine's own checkpoints also hold its message hub
(``HistoryBuffer`` objects with numpy arrays and scalars), which that reader
refuses, so resuming and testing would fail. Instead of switching the safe
reader off, :func:`allow_mmengine_checkpoints` allow-lists exactly the types
those checkpoints hold (found by loading real Runner checkpoints):

* ``mmengine.logging.history_buffer.HistoryBuffer``;
* ``getattr(HistoryBuffer, <its public method>)``: the buffer's statistics
  methods (``min``, ``max``, ``current``, ``mean``) are pickled by name
  through ``builtins.getattr``; only that lookup is allowed, by a restricted
  stand-in, never the real ``getattr``;
* numpy arrays and scalars: ``numpy.ndarray``, ``numpy.dtype``,
  ``numpy._core.multiarray._reconstruct`` / ``scalar`` (and the
  ``numpy.core`` names numpy 1 wrote).

:func:`load_local_checkpoint` replaces mmengine's local loader (used by
``load_from``, ``--resume``, ``tools/test.py`` and
``init_cfg=dict(type='Pretrained')``): it reads with ``weights_only=True``
and refuses anything else with one line, :class:`UnsafeCheckpointError`. A
file you trust (you made it, or got it from a trusted source) is read with
full unpickling when the environment variable ``E3D_TRUST_CHECKPOINTS=1`` is
set, e.g. ``E3D_TRUST_CHECKPOINTS=1 python tools/test.py CONFIG FILE``:
unpickling can run any code the file holds.
"""
import os
import os.path as osp
import pickle

#: The environment variable that opts in to full unpickling.
TRUST_ENV = 'E3D_TRUST_CHECKPOINTS'


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds objects outside the safe set (and is not read)."""


def trusted():
    """Whether the user opted in to full unpickling (``E3D_TRUST_CHECKPOINTS``
    set to 1, true or yes)."""
    return os.environ.get(TRUST_ENV, '').strip().lower() in ('1', 'true',
                                                             'yes')


def _history_buffer_getattr(obj, name):
    """``getattr`` as mmengine's pickled ``HistoryBuffer`` needs it: only a
    public method of ``HistoryBuffer`` itself."""
    from mmengine.logging.history_buffer import HistoryBuffer
    value = vars(HistoryBuffer).get(name) if obj is HistoryBuffer else None
    if (not isinstance(name, str) or name.startswith('_')
            or not callable(value)):
        raise pickle.UnpicklingError(
            f'getattr({getattr(obj, "__name__", type(obj).__name__)}, '
            f'{name!r}) is not allowed')
    return value


#: numpy scalar types whose dtypes may appear (no object, string or void
#: dtypes: message-hub buffers hold numbers).
_NUMBER_TYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                 'uint32', 'uint64', 'float16', 'float32', 'float64',
                 'longdouble', 'complex64', 'complex128')


def mmengine_safe_globals():
    """The ``(object, 'module.name')`` pairs mmengine checkpoints hold
    beyond what torch's safe reader allows by default."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    try:
        multiarray = np._core.multiarray  # numpy >= 2
    except AttributeError:
        multiarray = np.core.multiarray
    pairs = [(HistoryBuffer,
              'mmengine.logging.history_buffer.HistoryBuffer'),
             (_history_buffer_getattr, 'builtins.getattr'),
             (np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    # numpy >= 1.25 builds a dtype as an instance of its own class
    for kind in _NUMBER_TYPES:
        dtype_class = type(np.dtype(kind))
        if dtype_class is not np.dtype:
            pairs.append((dtype_class, f'numpy.dtypes.{dtype_class.__name__}'))
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        pairs.append((multiarray._reconstruct, f'{module}._reconstruct'))
        pairs.append((multiarray.scalar, f'{module}.scalar'))
    return pairs


def allow_mmengine_checkpoints():
    """Allow-list the types of mmengine checkpoints for torch's safe
    reader (idempotent; a no-op on torch without ``add_safe_globals``)."""
    import torch
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        add(mmengine_safe_globals())


def _reason(error):
    """The part of torch's long refusal that names what was refused."""
    text = str(error)
    marker = 'WeightsUnpickler error:'
    if marker in text:
        text = text.split(marker, 1)[1]
    boilerplate = ('Weights only load failed', 'Please file an issue',
                   'Check the documentation', 'Re-running', 'In PyTorch',
                   '(1)', '(2)')
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(boilerplate):
            return line.split(' was not an allowed global')[0]
    return type(error).__name__


def load_local_checkpoint(filename, map_location=None):
    """Load a local checkpoint with torch's safe reader (see the module
    docstring); the loader of mmengine's ``CheckpointLoader`` for paths.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        UnsafeCheckpointError: the file holds other objects (one line saying
            how to opt in for a trusted file).
    """
    import torch
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if trusted():
        return torch.load(filename, map_location=map_location,
                          weights_only=False)
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"checkpoint '{filename}' was not loaded: it holds objects "
            f'outside the safe set of weights and mmengine state '
            f'({_reason(e)}); if you trust this file, set '
            f'{TRUST_ENV}=1 to load it with full unpickling, which can run '
            'code') from None


def register_local_loader():
    """Make mmengine's ``CheckpointLoader`` read local files with
    :func:`load_local_checkpoint`."""
    from mmengine.runner.checkpoint import CheckpointLoader
    allow_mmengine_checkpoints()
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)


__all__ = ['UnsafeCheckpointError', 'TRUST_ENV', 'trusted',
           'load_local_checkpoint', 'allow_mmengine_checkpoints',
           'mmengine_safe_globals', 'register_local_loader']
