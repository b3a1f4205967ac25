#!/usr/bin/env bash
# Train with GPUS processes per node through torchrun:
#   bash tools/dist_train.sh CONFIG GPUS [ARGS of tools/train.py]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as in mmaction2.
# Without CUDA the processes talk over gloo (one per CPU share).
set -e
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

if [ -z "$CONFIG" ] || [ -z "$GPUS" ]; then
  echo "usage: bash tools/dist_train.sh CONFIG GPUS [ARGS]" >&2
  exit 2
fi

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
python -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "${@:3}"
