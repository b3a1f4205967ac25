#!/usr/bin/env bash
# The GPU checks of E3D in one script, meant for at most 8 minutes on one
# H100/H200-class GPU (each part is stopped at its own time limit; the speed
# runs start only while $BUDGET seconds are not used up, the most important
# first, and the compiled run gets what is left):
#
#   speed    bench/backbone_speed.py, E3D-M vs X3D-M at 16x224x224, batch 8,
#            train and infer, interleaved round by round: fp32 and AMP
#            (float16 + GradScaler) with the profile's depthwise share; AMP
#            with E3D's depthwise convs in float32 (depthwise_fp32) and with
#            the Triton depthwise kernels (depthwise_triton); inference with
#            the batch norms folded into the convs; fp32 with
#            E3D(channels_last=True), which must not be slower than
#            contiguous on a GPU. Each with the share of the
#            memory-bandwidth limit reached.
#   stream   bench/stream_speed.py, causal E3D-S at 13x160x160: the whole
#            clip against the functional stream_step and the static stream
#            (a CUDA graph), one video and 8 videos as one batch.
#   memory   bench/memory_check.py: the cost model's activation_bytes
#            against torch.cuda.max_memory_allocated of training steps.
#   train    the XS recipe trained for one epoch with
#            `bash tools/dist_train.sh CONFIG 1 --amp` (NCCL,
#            AmpOptimWrapper) on a generated synthetic-motion set, then
#            tools/test.py on its checkpoint.
#   compile  the AMP training steps of both networks under torch.compile.
#
# Then one table (bench/gpu_check_table.py). Usage, from anywhere:
#     bash bench/gpu_check.sh
# On a GPU machine without network access, carry the wheels its image lacks
# in .whl/ (`bash bench/gpu_wheels.sh` here; bench/README.md says how): when
# the stack does not import, they are installed into $SITE (default
# /tmp/e3d_site), which goes on PYTHONPATH first.
# Smoke test of the whole script on a CPU (tiny sizes, the AMP speed runs
# in bfloat16, the training in fp32: mmengine's AmpOptimWrapper needs a
# GPU; minutes):
#     DEVICE=cpu bash bench/gpu_check.sh
# Each part's output (NAME.txt), exit status (NAME.rc) and figures
# (NAME.json), and the table (table.txt), go to $RESULTS (default
# work_dirs/gpu_check); the train part's videos, checkpoints and work dirs
# to $SCRATCH (default $RESULTS/scratch); PACK_TO=DIR also packs the
# results (not the scratch) into DIR/gpu_check_results.tar.gz and copies the
# table there. Where $OUT is set (the device tool) and $RESULTS is not,
# RESULTS=/tmp/gpu_check and PACK_TO=$OUT: two files come back.
# PARTS="speed stream" runs some parts.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
start=$SECONDS

PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
if [ -z "${RESULTS:-}" ] && [ -n "${OUT:-}" ]; then
    # the device tool returns at most 8 files from $OUT: keep the results
    # beside it and pack them into $OUT
    RESULTS=${TMPDIR:-/tmp}/gpu_check
    PACK_TO=${PACK_TO:-$OUT}
fi
RESULTS=${RESULTS:-work_dirs/gpu_check}
PARTS=${PARTS:-speed stream memory train compile}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
# the generated videos, checkpoints and work dirs of the train part
SCRATCH=${SCRATCH:-$RESULTS/scratch}

if ls .whl/*.whl >/dev/null 2>&1 &&
    ! "$PYTHON" -c 'import mmengine, mmaction, decord' 2>/dev/null; then
    SITE=${SITE:-/tmp/e3d_site}
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
    # mmengine imports distutils, which Python 3.12 no longer has; the
    # carried setuptools brings it through a .pth file, and a folder on
    # PYTHONPATH has its .pth files read only by site.addsitedir
    if ! PYTHONPATH=$SITE "$PYTHON" -c 'import distutils' 2>/dev/null; then
        printf 'import site\nsite.addsitedir(%s)\n' "'$SITE'" \
            >"$SITE/sitecustomize.py"
    fi
    export PYTHONPATH=$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
# tools/dist_train.sh runs `python`: the same interpreter, also where
# $PYTHON's folder has no `python` (an image with only python3) or another
python_path=$(command -v "$PYTHON") || { echo "no $PYTHON" >&2; exit 1; }
[[ $python_path == /* ]] || python_path=$ROOT/$python_path
PYTHON_SHIM=$(mktemp -d)
trap 'rm -rf "$PYTHON_SHIM"' EXIT
printf '#!/bin/sh\nexec "%s" "$@"\n' "$python_path" >"$PYTHON_SHIM/python"
chmod +x "$PYTHON_SHIM/python"
PATH=$PYTHON_SHIM:$(dirname "$python_path"):$PATH

if [ "$DEVICE" = cpu ]; then
    # smoke sizes: every command line runs, no figure means anything
    MODELS=${MODELS:-E3D-XS X3D-M}
    SPEED="--frames 4 --size 32 --batch 1 --rounds 2 --steps 1 --warmup 1"
    STREAM_ARGS="--arch E3D-XS --frames 4 --size 32 --rounds 2"
    MEMORY_ARGS="--archs E3D-XS --frames 4 --size 32 --batches 1 2"
    DATA_ARGS="--num-videos 40 --size 32"
    TRAIN_AMP=""
    LIMIT=${LIMIT:-300}
    BUDGET=${BUDGET:-600}
else
    MODELS=${MODELS:-E3D-M X3D-M}
    SPEED="--frames 16 --size 224 --batch 8 --rounds 9 --steps 3 --warmup 3"
    STREAM_ARGS="--arch E3D-S --frames 13 --size 160 --rounds 10"
    MEMORY_ARGS=""
    DATA_ARGS=""
    TRAIN_AMP="--amp"
    LIMIT=${LIMIT:-100}
    BUDGET=${BUDGET:-480}
fi

command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
        --format=csv,noheader
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda",
torch.version.cuda, "cudnn", torch.backends.cudnn.version())'

has_part() { [[ " $PARTS " == *" $1 "* ]]; }

# run NAME LIMIT COMMAND...: output to NAME.txt, exit status to NAME.rc
run() {
    local name=$1 limit=$2
    shift 2
    local t=$SECONDS
    echo "=== $name"
    timeout "$limit" "$@" >"$RESULTS/$name.txt" 2>&1
    local rc=$?
    echo "$rc" >"$RESULTS/$name.rc"
    if [ "$rc" -ne 0 ]; then
        echo "($name: exit $rc)"
        tail -5 "$RESULTS/$name.txt"
    fi
    echo "($name: $((SECONDS - t)) s)"
}

# speed NAME LIMIT ARGS...: one backbone_speed.py run, within what is left
# of $BUDGET (skipped when less than a minute is left)
speed() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - (SECONDS - start)))
    if ((left < 60)); then
        echo "(speed_$name skipped: $((SECONDS - start)) s of $BUDGET used)"
        echo skipped >"$RESULTS/speed_$name.rc"
        return
    fi
    ((limit > left)) && limit=$left
    # shellcheck disable=SC2086
    run "speed_$name" "$limit" "$PYTHON" bench/backbone_speed.py \
        --device "$DEVICE" --models $MODELS $SPEED --modes train infer \
        --json "$RESULTS/speed_$name.json" "$@"
    grep -E '^(E3D|X3D)|verdict|bandwidth' "$RESULTS/speed_$name.txt"
}

# In the order of what matters most, so that a slow machine loses the
# extras: the baseline speeds, streaming, the CUDA training path, memory,
# then the variants, torch.compile last.
if has_part speed; then
    speed fp32 "$LIMIT" --profile --profile-steps 3
    speed amp "$LIMIT" --amp --profile --profile-steps 3
fi

if has_part stream; then
    for batch in 1 8; do
        # shellcheck disable=SC2086
        run "stream_b$batch" "$LIMIT" "$PYTHON" bench/stream_speed.py \
            $STREAM_ARGS --device "$DEVICE" --runtime torch \
            --batch "$batch" --json "$RESULTS/stream_b$batch.json"
        grep -E '^\[torch\] (ratio|static stream)' "$RESULTS/stream_b$batch.txt"
    done
fi

if has_part train; then
    data=$SCRATCH/data
    config=configs/e3d/e3d_xs_8x4x1_synthetic-motion.py
    # shellcheck disable=SC2086
    run data 120 "$PYTHON" tools/data/synthetic_motion.py --out "$data" \
        --overwrite $DATA_ARGS
    options=(train_cfg.max_epochs=1 default_hooks.logger.interval=10)
    for split in train val test; do
        list=train_list.txt
        [ "$split" = train ] || list=val_list.txt
        options+=("${split}_dataloader.dataset.ann_file=$data/$list"
                  "${split}_dataloader.dataset.data_prefix.video=$data/videos")
    done
    # shellcheck disable=SC2086
    run train $((LIMIT * 2)) bash tools/dist_train.sh "$config" 1 $TRAIN_AMP \
        --work-dir "$SCRATCH/train_work" --cfg-options "${options[@]}"
    run test "$LIMIT" "$PYTHON" tools/test.py "$config" \
        "$SCRATCH/train_work/epoch_1.pth" --work-dir "$SCRATCH/test_work" \
        --cfg-options "${options[@]}"
    grep -hE 'Epoch\((val|test)\).*acc/top1' "$RESULTS/train.txt" \
        "$RESULTS/test.txt" | sed 's/^.*\(Epoch\)/\1/'
fi

if has_part memory; then
    # shellcheck disable=SC2086
    run memory "$LIMIT" "$PYTHON" bench/memory_check.py --device "$DEVICE" \
        $MEMORY_ARGS --json "$RESULTS/memory.json"
    cat "$RESULTS/memory.txt"
fi

if has_part speed; then
    speed amp_dw_fp32 "$LIMIT" --amp --e3d-options depthwise_fp32=True
    # the Triton depthwise kernels (their first compile takes a while)
    if "$PYTHON" -c 'import triton' 2>/dev/null; then
        speed amp_triton $((LIMIT + 60)) --amp \
            --e3d-options depthwise_triton=True --profile --profile-steps 3
    fi
    # inference with the batch norms folded into the convs
    speed amp_fuse_bn "$LIMIT" --amp --modes infer --fuse-bn
    speed e3d_channels_last "$LIMIT" --e3d-options channels_last=True
fi

# torch.compile last, in the time left: compiling both networks' train
# graphs takes minutes
if has_part compile; then
    speed amp_compile "$BUDGET" --modes train --compile --amp
fi

echo "(all parts: $((SECONDS - start)) s)"
"$PYTHON" bench/gpu_check_table.py "$RESULTS" | tee "$RESULTS/table.txt"
if [ -n "${PACK_TO:-}" ]; then
    # one small archive of every part's output and figures (no scratch),
    # and the table beside it
    mkdir -p "$PACK_TO"
    tar -czf "$PACK_TO/gpu_check_results.tar.gz" -C "$RESULTS" \
        --exclude=./scratch --exclude=./gpu_check_results.tar.gz . &&
        echo "results: $PACK_TO/gpu_check_results.tar.gz"
    [ "$PACK_TO" -ef "$RESULTS" ] || cp "$RESULTS/table.txt" "$PACK_TO/"
fi
