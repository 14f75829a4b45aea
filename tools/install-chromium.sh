#!/usr/bin/env bash
# Installs Debian's Chromium (/usr/bin/chromium, run headless) for the web viewer's browser test
# (tests/test_vis_viewer.py), unless it is already there. Idempotent and quiet: apt's output is
# shown only when it fails. Uses sudo when not root. Prints the installed version.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  if ! { $SUDO apt-get update -qq \
         && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
       } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-chromium.sh: apt-get failed" >&2
    exit 1
  fi
fi
# Debian's launcher script may print a harmless shell warning on stderr; keep only the version.
/usr/bin/chromium --version 2>/dev/null
