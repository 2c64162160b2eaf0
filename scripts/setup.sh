#!/usr/bin/env bash
# Installs Ferry's build and test dependencies from Debian 12 packages.
# Idempotent and quick when everything is present. Needs root (or sudo) only
# when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache python3
  libboost-dev libtomlplusplus-dev libspdlog-dev catch2 liburing-dev
  libseccomp-dev libcli11-dev nlohmann-json3-dev prometheus-cpp-dev libsystemd-dev
  python3-pytest python3-pytest-asyncio python3-hypothesis python3-pip python3-setuptools python3-wheel
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
