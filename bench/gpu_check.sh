#!/usr/bin/env bash
# E3D-M vs X3D-M on one CUDA GPU: fp32 and AMP (float16 + GradScaler),
# contiguous and channels_last_3d; training steps (forward + backward + SGD)
# and inference, interleaved round by round (bench/backbone_speed.py), with
# the profiler's share of a step spent in depthwise 3D convs. Meant to take
# 2-4 minutes of GPU time: every configuration is stopped after $LIMIT
# seconds, and the optional cudnn.benchmark run is left out once $BUDGET
# seconds have passed.
#
# Usage, from anywhere, with the project's environment active:
#     bash bench/gpu_check.sh
# Smoke test of the command lines on a CPU (tiny clips):
#     DEVICE=cpu FRAMES=4 SIZE=32 BATCH=1 ROUNDS=3 STEPS=1 WARMUP=1 \
#         bash bench/gpu_check.sh
# Prints the key lines of each run and a table at the end; each run's full
# output (NAME.txt) and figures (NAME.json) go to $OUT, or to
# work_dirs/gpu_check when OUT is not set.
set -u
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
FRAMES=${FRAMES:-16}
SIZE=${SIZE:-224}
BATCH=${BATCH:-8}
ROUNDS=${ROUNDS:-9}
STEPS=${STEPS:-3}
WARMUP=${WARMUP:-3}
LIMIT=${LIMIT:-120}
BUDGET=${BUDGET:-170}
RESULTS=${OUT:-work_dirs/gpu_check}
mkdir -p "$RESULTS"
start=$SECONDS
names=()

command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
        --format=csv,noheader
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda",
torch.version.cuda, "cudnn", torch.backends.cudnn.version())'

run() {
    local name=$1
    shift
    local t=$SECONDS
    names+=("$name")
    echo "=== $name"
    timeout "$LIMIT" "$PYTHON" bench/backbone_speed.py --device "$DEVICE" \
        --frames "$FRAMES" --size "$SIZE" --batch "$BATCH" \
        --rounds "$ROUNDS" --steps "$STEPS" --warmup "$WARMUP" \
        --modes train infer --profile --profile-steps 3 \
        --json "$RESULTS/$name.json" "$@" >"$RESULTS/$name.txt" 2>&1
    local rc=$?
    # The header, memory, ratio spreads, verdicts and profile shares.
    grep -E '^(E3D-M|X3D-M)|GFLOPs/s  |verdict|profile |error' \
        "$RESULTS/$name.txt"
    [ "$rc" -ne 0 ] && { echo "($name: exit $rc)"; tail -5 "$RESULTS/$name.txt"; }
    echo "($name: $((SECONDS - t)) s)"
}

run fp32_contiguous
run fp32_channels_last --channels-last
run amp_contiguous --amp
run amp_channels_last --amp --channels-last
if ((SECONDS - start < BUDGET)); then
    run amp_channels_last_cudnn_benchmark --amp --channels-last \
        --cudnn-benchmark
else
    echo "(skipped amp_channels_last_cudnn_benchmark: $((SECONDS - start)) s used)"
fi

"$PYTHON" - "$RESULTS" "${names[@]}" <<'EOF'
"""One row per configuration and mode from the runs' JSON files."""
import json
import os
import sys

print(f'{"config":<34}{"mode":<6}{"E3D-M c/s":>10}{"X3D-M c/s":>10}'
      f'{"ratio c/s [IQR]":>22}{"GF/s ratio":>11}  {"verdict":<10}'
      f'{"dw share E3D/X3D (of kernels)":<30}')
for run in sys.argv[2:]:
    path = os.path.join(sys.argv[1], run + '.json')
    if not os.path.exists(path):
        print(f'{run:<34}no results')
        continue
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    first, second = data['settings']['models']
    for mode_name, mode in data['modes'].items():
        r = mode['ratio']
        verdict = {'above': 'YES', 'below': 'NO'}.get(mode['verdict'],
                                                      'UNDECIDED')
        shares = []
        for name in (first, second):
            p = mode.get('profile', {}).get(name)
            if p is None:
                shares.append('-')
                continue
            share = f'{p["dw_ms"] / p["step_ms"]:.0%}'
            if p.get('kernel_ms'):
                share += f' ({p["dw_ms"] / p["kernel_ms"]:.0%})'
            shares.append(share)
        print(f'{run:<34}{mode_name:<6}'
              f'{mode["clips_s"][first]["median"]:>10.1f}'
              f'{mode["clips_s"][second]["median"]:>10.1f}'
              f'{r["median"]:>8.2f} [{r["q1"]:.2f}..{r["q3"]:.2f}]'
              f'{mode["gflops_ratio"]["median"]:>11.2f}  {verdict:<10}'
              f'{" / ".join(shares):<30}')
EOF
echo "(total $((SECONDS - start)) s)"
