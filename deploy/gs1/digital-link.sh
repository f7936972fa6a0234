#!/usr/bin/env bash
# GS1's Digital Link SDK (npm digital-link.js), for the GS1 resolver conformance tests
# (tests/resolver/test_gs1.py).
#
#   digital-link.sh        install it into the cache (once; again when package.json
#                          changes); a cached copy is used as it is, offline too
#   digital-link.sh run    the same, then run dlprobe.js (JSON jobs on stdin)
#
# Cache: ${IDRES_CACHE:-~/.cache/idres}/digital-link/<sha256 of package.json>/node_modules
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUM="$(sha256sum "$HERE/package.json" | cut -c1-16)"
CACHE="${IDRES_CACHE:-$HOME/.cache/idres}/digital-link/$SUM"

log() { echo "digital-link.sh: $*" >&2; }

if [[ ! -f "$CACHE/node_modules/digital-link.js/package.json" ]]; then
  command -v npm >/dev/null || { log "npm not found (needed once to fetch digital-link.js)"; exit 1; }
  log "installing digital-link.js from the npm registry into $CACHE"
  # fill a temp dir and rename, so an interrupted install never looks done
  tmp="$CACHE.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  cp "$HERE/package.json" "$tmp/"
  (cd "$tmp" && npm install --no-audit --no-fund --loglevel=error </dev/null >&2)
  rm -rf "$CACHE"; mv "$tmp" "$CACHE"
fi

if [[ "${1:-}" == "run" ]]; then
  exec env NODE_PATH="$CACHE/node_modules" node "$HERE/dlprobe.js"
fi
