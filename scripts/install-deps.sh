#!/usr/bin/env bash
# install-deps.sh — install what rollsafe needs to build, test and benchmark on Debian 12.
# Idempotent: installs only the packages that are missing; waits for the apt lock.
set -euo pipefail

PKGS=(
  g++ cmake ninja-build pkg-config ccache curl ca-certificates procps clang-format
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev libboost-system1.81-dev
  libsqlite3-dev sqlite3 libpq-dev postgresql libhiredis-dev redis-server libssl-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev libyaml-cpp-dev
  nginx libnginx-mod-http-lua wrk chromium python3
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
# kubectl renders deploy/k8s/ in the deploy tests (`kubectl kustomize`, tests/deploy/). This
# project's machines come with one (kustomize v5); only where there is none, fall back to Debian's
# kubernetes-client: kubectl 1.20, whose kustomize v2 is too old for deploy/k8s (needs kubectl
# >= 1.22) — the test then says so instead of "kubectl not found".
if ! command -v kubectl >/dev/null; then
  missing+=(kubernetes-client)
fi
# node + npm validate the rendered manifests offline (tests/deploy/, npm kubernetes-models).
# These machines come with Node.js 20; elsewhere Debian's nodejs (18) is enough.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
