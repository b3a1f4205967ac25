#!/usr/bin/env bash
# Test with GPUS processes per node through torchrun:
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [ARGS of tools/test.py]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as in mmaction2.
set -e
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

if [ -z "$CONFIG" ] || [ -z "$CHECKPOINT" ] || [ -z "$GPUS" ]; then
  echo "usage: bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [ARGS]" >&2
  exit 2
fi

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
python -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$(dirname "$0")/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
