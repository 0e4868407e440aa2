#!/usr/bin/env bash
# Installs runnel's build dependencies from Debian packages (Debian 12 or later).
# Run as root, or with sudo available.  Packages are installed without their
# recommendations, so every package the build needs is named here, including
# those another package only recommends: libdnnl-dev's CMake config requires
# OpenCL (ocl-icd-opencl-dev).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git python3 python3-venv
  libdnnl-dev ocl-icd-opencl-dev libfmt-dev libspdlog-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libpcre2-dev libutf8proc-dev libboost-dev
  clang libclang-rt-dev libomp-dev
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages already installed"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
