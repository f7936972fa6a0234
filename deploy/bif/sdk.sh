#!/usr/bin/env bash
# BIF's Java SDK (cn.bitfactory:bif-chain-sdk, Maven Central) and BifProbe, a small
# command-line probe built on it, for the tests that check idres's did:bid addresses
# (tests/schemas/test_bid_address.py).
#
#   sdk.sh            fetch the jars into the cache (once) and compile BifProbe there
#                     (again whenever BifProbe.java is newer)
#   sdk.sh run ARGS   the same, then run BifProbe ARGS: one JSON object on stdout, e.g.
#                     sdk.sh run keygen 5
#
# Cache: ${IDRES_CACHE:-~/.cache/idres}/bif-sdk/VERSION/{lib,classes}, keyed on the
# POM's checksum, like deploy/handle/client.sh. Needs a JDK 17+ and, for the first
# fetch, mvn.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"
SRC="$HERE/BifProbe.java"
VERSION="$(sed -n 's:.*<bif.version>\(.*\)</bif.version>.*:\1:p' "$POM")"
CACHE="${IDRES_CACHE:-$HOME/.cache/idres}/bif-sdk/$VERSION"

log() { echo "sdk.sh: $*" >&2; }
die() { log "$*"; exit 1; }

WHAT="bif-chain-sdk $VERSION"
# shellcheck source=deploy/maven.sh
. "$HERE/../maven.sh"

build() {
  maven_fetch
  local class="$CACHE/classes/BifProbe.class"
  if [[ -f "$class" && ! "$SRC" -nt "$class" ]]; then
    return 0
  fi
  command -v javac >/dev/null || die "javac not found: BifProbe needs a JDK 17+"
  log "compiling BifProbe into $CACHE/classes"
  local tmp="$CACHE/classes.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # -proc:none: the SDK ships Lombok, whose annotation processor breaks javac 17
  javac --release 17 -proc:none -encoding UTF-8 -cp "$CACHE/lib/*" -d "$tmp" "$SRC" \
    || { rm -rf "$tmp"; die "javac failed"; }
  rm -rf "$CACHE/classes"; mv "$tmp" "$CACHE/classes"
}

run() {
  build
  exec java -Xms16m -Xmx128m -XX:TieredStopAtLevel=1 -Xshare:auto \
    -cp "$CACHE/classes:$CACHE/lib/*" BifProbe "$@"
}

case "${1:-}" in
  "") build ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 [run ARGS...]" >&2; exit 1 ;;
esac
