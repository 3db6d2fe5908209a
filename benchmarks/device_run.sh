#!/usr/bin/env bash
# One call on the lent GPU machine: bring the Vulkan loader and our wheels, check, test, benchmark.
# Here first: the .gl/ debs and .whl/ wheels (see benchmarks/NOTES.md). Usage there:
#   bash benchmarks/device_run.sh [extra python commands...]
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 HLX_VALIDATION=0
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
