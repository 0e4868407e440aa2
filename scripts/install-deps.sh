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

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# Boost.Beast comes with any Boost from 1.74 (Debian 12's libboost-dev) on.  A
# machine that already has a newer libboost1.NN-dev keeps it: that package
# conflicts with libboost-dev's 1.74, and asking for both fails.
boost_present() {
  dpkg-query -W -f='${Package} ${Status}\n' 'libboost1.*-dev' 2>/dev/null |
    awk '$1 ~ /^libboost1\.[0-9]+-dev$/ && $2 == "install" && $NF == "installed" { split($1, v, /[.-]/); if (v[2] + 0 >= 74) ok = 1 } END { exit !ok }'
}

missing=()
for p in "${packages[@]}"; do
  if [ "$p" = libboost-dev ] && boost_present; then continue; fi
  installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages already installed"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
