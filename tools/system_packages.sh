#!/usr/bin/env bash
# System packages the tests need beyond Java (tools/check_java.sh): Debian's chromium, which
# the real-browser tests drive through Playwright (tests/browserkit.py), and a font so that
# screenshots show text. Playwright's own browser download is never used. The production
# profile (`make up PROFILE=cluster`, aimass.stack.cluster, and its e2e test) needs Debian's
# postgresql and redis-server; their own services are not used (the profile starts its own
# on loopback, under the var dir).
# As root on Debian/Ubuntu it installs what is missing (one apt-get update, one install);
# otherwise it says which command to run. A no-op (one line) when all is there;
# AIMASS_CHROMIUM=/path/to/chromium skips the check (tests/browserkit.py uses that binary).
set -euo pipefail

if [ -n "${AIMASS_CHROMIUM:-}" ]; then
  [ -x "$AIMASS_CHROMIUM" ] || { echo "error: AIMASS_CHROMIUM=$AIMASS_CHROMIUM is not an executable file." >&2; exit 1; }
  echo "chromium ok: $AIMASS_CHROMIUM (AIMASS_CHROMIUM)"
  exit 0
fi

missing=()
chromium_bin="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$chromium_bin" ] || missing+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || command -v postgres >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
if command -v dpkg-query >/dev/null 2>&1 \
  && ! dpkg-query -W -f='${Status}' fonts-liberation 2>/dev/null | grep -q 'install ok installed'; then
  missing+=(fonts-liberation)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  echo "chromium ok: $chromium_bin; postgresql and redis-server ok"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: the browser tests need chromium (not found on PATH) and this is not a Debian/Ubuntu system." >&2
  echo "  install Chromium with your package manager (macOS: brew install --cask chromium)," >&2
  echo "  or point AIMASS_CHROMIUM at a Chromium/Chrome binary, then re-run 'make test'." >&2
  exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "error: the browser tests need these system packages: ${missing[*]}" >&2
  echo "  run: sudo tools/system_packages.sh" >&2
  echo "  (or: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]})" >&2
  echo "  then re-run 'make test'." >&2
  exit 1
fi

echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d 101: the packages' own services are not started (the profile runs its own).
policy=/usr/sbin/policy-rc.d
had_policy=0; [ -e "$policy" ] && had_policy=1
[ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; }
apt-get install -y -qq --no-install-recommends "${missing[@]}"
[ "$had_policy" = 1 ] || rm -f "$policy"
chromium_bin="$(command -v chromium || command -v chromium-browser)"
echo "chromium ok: $chromium_bin"
