#!/usr/bin/env bash
# Download into .whl/ the wheels that bench/gpu_check.sh needs on a GPU
# machine without network access whose image has torch, numpy, scipy, opencv
# and matplotlib but not the OpenMMLab stack (nor decord). Run it here, where
# pip reaches PyPI; bench/gpu_check.sh installs whatever lies in .whl/.
#     bash bench/gpu_wheels.sh [PYTHON_VERSION]   # default 3.12 (the image's)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-3.12}
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
    manylinux2014_x86_64 manylinux2010_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
# importlib_metadata 8.7 (10.x needs lazy_importer); setuptools < 81 keeps
# pkg_resources, which mmengine's mmaction:: config bases use.
python3 -m pip download -q --no-deps --only-binary=:all: \
    --python-version "$version" --implementation cp "${platforms[@]}" \
    -d .whl mmengine==0.10.7 mmaction2==1.2.0 mmcv-lite==2.1.0 addict yapf \
    termcolor platformdirs importlib_metadata==8.7.0 'setuptools<81' \
    decord==0.6.0
ls .whl
du -sh .whl
