#!/usr/bin/env bash
# The stock DID clients the DID routes are tested with (tests/resolver/test_did_clients.py):
# npm's did-resolver (the resolver most DID libraries build on, given a method driver of
# a few lines that calls a node over HTTP) and @sphereon/did-uni-client (a Universal
# Resolver client), pinned by package.json and package-lock.json.
#
#   clients.sh            install them into the cache (once per lock file)
#   clients.sh run JSON   the same, then run resolve.mjs JSON: one JSON array on stdout
#                         (see resolve.mjs)
#
# Cache: ${IDRES_CACHE:-~/.cache/idres}/did-clients/LOCKSUM/node_modules, keyed on the
# lock file's checksum; a cached install needs no network. Needs node and npm.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUM="$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -c1-16)"
CACHE="${IDRES_CACHE:-$HOME/.cache/idres}/did-clients/$SUM"

log() { echo "clients.sh: $*" >&2; }
die() { log "$*"; exit 1; }

install() {
  [[ -f "$CACHE/.installed" ]] && return 0
  command -v npm >/dev/null || die "npm not found (needed once to install the DID clients)"
  log "installing did-resolver and @sphereon/did-uni-client into $CACHE"
  # Fill a temp dir and rename, so an interrupted install never looks done.
  local tmp="$CACHE.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$tmp/"
  (cd "$tmp" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error </dev/null >&2) \
    || { rm -rf "$tmp"; die "npm ci failed"; }
  touch "$tmp/.installed"
  rm -rf "$CACHE"; mv "$tmp" "$CACHE"
}

case "${1:-}" in
  "") install ;;
  run)
    shift
    install
    command -v node >/dev/null || die "node not found"
    IDRES_DID_CLIENTS="$CACHE" exec node "$HERE/resolve.mjs" "$@"
    ;;
  *) echo "usage: $0 [run JSON]" >&2; exit 1 ;;
esac
