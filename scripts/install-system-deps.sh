#!/usr/bin/env bash
# Installs the Vulkan loader, Mesa's lavapipe (Vulkan on the CPU), the Khronos
# validation layer, spirv-tools, and gcc with the Python headers (the C recorder,
# hlx_vulkan/vk/_record.c) through apt-get, only where missing.
set -euo pipefail
packages=(libvulkan1 mesa-vulkan-drivers vulkan-validationlayers spirv-tools python3-venv gcc python3-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# pyenv or other non-Debian Pythons bring their own venv module.
if [[ " ${missing[*]} " == *" python3-venv "* ]] && python3 -c 'import venv, ensurepip' 2>/dev/null; then
    missing=("${missing[@]/python3-venv}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "Missing system packages (${missing[*]}) and no apt-get: install the Vulkan loader, a driver and the validation layer by hand." >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "Installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
