"""Hooks for mmengine runners."""
import json
import os.path as osp

from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class ParamChecksumHook(Hook):
    """Write, per rank, a checksum of the model's parameters after training.

    ``<work_dir>/param_checksum_rank<R>.json`` holds the rank, the world
    size, the iterations this rank ran and the sum and sum of squares of all
    parameters: equal checksums on all ranks show that distributed training
    kept the replicas in sync.
    """

    def after_train(self, runner):
        """Record the checksum of this rank's replica."""
        model = runner.model
        if hasattr(model, 'module'):
            model = model.module
        total = squares = 0.0
        for param in model.parameters():
            data = param.detach().double()
            total += float(data.sum())
            squares += float((data * data).sum())
        record = dict(
            rank=get_rank(),
            world_size=get_world_size(),
            iters=runner.iter,
            param_sum=total,
            param_sum_sq=squares)
        path = osp.join(runner.work_dir,
                        f'param_checksum_rank{record["rank"]}.json')
        with open(path, 'w') as f:
            json.dump(record, f)
