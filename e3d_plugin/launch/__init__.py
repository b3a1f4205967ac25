"""What the tools share: loading a config with clear errors, checking the
config's types and the data it names, building the mmengine ``Runner``
with a user's mistakes reported on one line, checking checkpoints before
they are used, and setting up distributed runs on machines without CUDA
(gloo instead of NCCL).

Every mistake a user can make in a config, an option or a path ends as a
:class:`LaunchError` whose message is one line naming the field and the fix;
the tools print it as ``error: ...`` and exit with code 2. Errors of the
training itself (after the build) are not caught: they keep their traceback.

Modules: ``errors`` (the error, the one-line parser), ``options``
(``--cfg-options``), ``config_types`` and ``clip`` (what a config's settings
must be, the clip its pipeline makes), ``config`` (loading and merging),
``paths`` (datasets, work dirs, output files), ``runner`` (the build),
``checkpoints``, ``distributed``.
"""
from .checkpoints import (check_checkpoint_matches, check_resume,
                          load_checkpoint_file)
from .clip import config_clip, dataset_configs, pipeline_clip
from .config import load_config, merge_cfg_options
from .config_types import check_config_types
from .distributed import (VideoDecodeError, end_distributed,
                          name_unreadable_videos, run_or_report,
                          setup_distributed)
from .errors import LaunchError, OneLineArgumentParser, error_line
from .options import (MAX_OPTION_DEPTH, CfgOptionsAction, check_option_key,
                      parse_cfg_option)
from .paths import (check_data, check_input_file, check_output_path,
                    prepare_output_file, prepare_work_dir, same_file)
from .runner import BUILD_ERRORS, build_runner, check_pretrained

__all__ = [
    'BUILD_ERRORS', 'CfgOptionsAction', 'LaunchError', 'MAX_OPTION_DEPTH',
    'OneLineArgumentParser', 'VideoDecodeError', 'build_runner',
    'check_checkpoint_matches', 'check_config_types', 'check_data',
    'check_input_file', 'check_option_key', 'check_output_path',
    'check_pretrained', 'check_resume', 'config_clip',
    'dataset_configs', 'end_distributed', 'error_line',
    'load_checkpoint_file', 'load_config', 'merge_cfg_options',
    'name_unreadable_videos', 'parse_cfg_option', 'pipeline_clip',
    'prepare_output_file', 'prepare_work_dir', 'run_or_report',
    'same_file', 'setup_distributed'
]
