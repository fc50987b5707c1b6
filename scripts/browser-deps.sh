#!/usr/bin/env bash
# Installs what the browser tests need: Debian's Chromium and its WebDriver (chromedriver), and
# the node modules of the test OpenID Provider in tests/oidc-provider (npm ci, from its lock
# file). Does nothing that is already done; fails loudly when something cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "browser-deps: $*" >&2; exit 1; }

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "installing chromium needs root or sudo"
    sudo=(sudo)
  fi
  packages=(chromium chromium-driver)
  echo "browser-deps: installing ${packages[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be missing or stale: refresh them only when the install fails.
  if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${packages[@]}"; then
    echo "browser-deps: apt-get install failed; updating the package lists and trying again" >&2
    "${sudo[@]}" apt-get update || fail "apt-get update failed"
    "${sudo[@]}" apt-get install -y --no-install-recommends "${packages[@]}" \
      || fail "apt-get could not install ${packages[*]}"
  fi
  [ -x /usr/bin/chromium ] || fail "/usr/bin/chromium is still missing after the install"
  [ -x /usr/bin/chromedriver ] || fail "/usr/bin/chromedriver is still missing after the install"
fi

provider=tests/oidc-provider
command -v node >/dev/null || fail "node is needed for the test OpenID Provider ($provider)"
command -v npm >/dev/null || fail "npm is needed to install the test OpenID Provider ($provider)"
if [ ! -d "$provider/node_modules" ] || [ "$provider/package-lock.json" -nt "$provider/node_modules" ]; then
  echo "browser-deps: npm ci in $provider" >&2
  npm ci --prefix "$provider" --no-audit --no-fund >&2 || fail "npm ci failed in $provider"
  # npm ci leaves node_modules' own time alone when it reuses the folder: mark it current.
  touch "$provider/node_modules"
fi
