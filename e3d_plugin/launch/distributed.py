"""Distributed runs on machines without CUDA (gloo), naming a video that
cannot be decoded, and ending a run cleanly."""
import os
import sys

from .errors import LaunchError, _short


def setup_distributed(cfg, launcher):
    """Prepare a distributed run; on a machine without CUDA use gloo.

    mmengine's ``pytorch`` launcher calls ``torch.cuda.set_device``, which a
    CPU-only torch cannot do, and its DDP wrapper passes ``device_ids``,
    which DDP rejects for CPU modules. Where CUDA is missing, the process
    group is created here with gloo from torchrun's environment (mmengine
    then skips its own set-up), and DDP gets ``device_ids=None``.
    """
    import torch
    import torch.distributed as dist
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise LaunchError(
            f"--launcher {launcher} needs CUDA; on a CPU machine use "
            '--launcher pytorch (tools/dist_train.sh) or none')
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                           'MASTER_PORT') if k not in os.environ]
    if missing:
        raise LaunchError(
            '--launcher pytorch expects torchrun to set '
            f"{', '.join(missing)}; start it with tools/dist_train.sh")
    env_cfg = cfg.get('env_cfg') or {}
    if not isinstance(env_cfg.get('dist_cfg') or {}, dict):
        raise LaunchError('env_cfg.dist_cfg must be a dict, got '
                          f"{_short(env_cfg['dist_cfg'])}")
    env_cfg['dist_cfg'] = dict(env_cfg.get('dist_cfg') or {}, backend='gloo')
    cfg.env_cfg = env_cfg
    if not dist.is_initialized():
        dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    if backbone.get('channels_last'):
        # Seen here: DDP over gloo with channels_last_3d weights aborts a
        # rank now and then ("terminate called without an active
        # exception") after "grad strides do not match bucket view strides".
        backbone['channels_last'] = False
        print('e3d_plugin: channels_last is turned off for DDP on CPU',
              file=sys.stderr)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return True


class VideoDecodeError(RuntimeError):
    """A video file of a dataset cannot be decoded."""


def name_unreadable_videos():
    """Make mmaction2's ``DecordInit`` name the file it cannot decode.

    decord reads the bytes mmaction2 hands it and reports only "Error reading
    N bytes"; the wrapper re-raises as :class:`VideoDecodeError` with the
    path, which the tools print on one line.
    """
    from mmaction.datasets.transforms.loading import DecordInit
    if getattr(DecordInit.transform, 'names_unreadable_videos', False):
        return
    original = DecordInit.transform

    def transform(self, results):
        try:
            return original(self, results)
        except Exception as e:
            raise VideoDecodeError(
                f"cannot decode video '{results.get('filename')}' "
                f'({type(e).__name__}: {e}); check the file or remove it '
                'from the annotation list') from e

    transform.names_unreadable_videos = True
    DecordInit.transform = transform


def run_or_report(step):
    """Run ``step()``; a bad video ends it with one line and exit code 2.

    The process group is destroyed at the end: a gloo group left alive at
    interpreter exit can abort the process ("terminate called without an
    active exception") after the work is done. After a normal end the ranks
    first wait for each other, so that no rank tears its connections down
    while another is still in a collective of the run's last steps.
    """
    try:
        step()
        wait_for_ranks()
    except VideoDecodeError as e:
        lines = [line for line in str(e).splitlines() if line.strip()]
        message = lines[-1] if lines else repr(e)
        # A DataLoader worker's copy is prefixed with the class path.
        message = message.split('VideoDecodeError: ', 1)[-1]
        print(f'error: {message}', file=sys.stderr)
        return 2
    finally:
        end_distributed()
    return 0


def wait_for_ranks():
    """A barrier of all ranks, where a process group of several exists."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized() and (
            dist.get_world_size() > 1):
        dist.barrier()


def end_distributed():
    """Destroy the process group, if one was created."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
