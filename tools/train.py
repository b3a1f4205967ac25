"""Train a recognizer from an mmaction2 config (the flags of mmaction2's
``tools/train.py``), with the E3D plugin loaded.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--no-validate] [--auto-scale-lr] [--seed N] [--diff-rank-seed]
        [--deterministic] [--cfg-options k=v ...] [--launcher pytorch]

The same as ``python -m e3d_plugin.launch.train`` (where the code lives), run
from a checkout. On a machine without CUDA, ``--launcher pytorch``
(``tools/dist_train.sh``) runs over gloo.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from e3d_plugin.launch.train import main, merge_args, parse_args  # noqa: E402,F401,E501

if __name__ == '__main__':
    sys.exit(main())
