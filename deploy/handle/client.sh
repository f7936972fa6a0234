#!/usr/bin/env bash
# CNRI's Handle client library (net.handle:handle-client, the reference Handle protocol
# client) and HdlProbe, a small command-line probe built on it, for the tests that
# drive idres's Handle interface (RFC 3651/3652, port 2641, TCP and UDP).
#
#   client.sh            fetch the jars into the cache (once) and compile HdlProbe
#                        there (again whenever HdlProbe.java is newer)
#   client.sh run ARGS   the same, then run HdlProbe ARGS: one JSON object on stdout,
#                        exit 0 response, 1 usage, 2 HandleException, 3 library crash
#                        (see HdlProbe.java); e.g.
#                        client.sh run resolve --tcp 127.0.0.1 2641 88.100.1/ABC-123
#
# Cache: ${IDRES_CACHE:-~/.cache/idres}/handle-client/VERSION/
#   lib/       the client jar and its runtime deps (copies, not ~/.m2 paths)
#   sources/   handle-client-VERSION-sources.jar: the reference for the protocol
#   classes/   HdlProbe compiled
#   config/    the library's config dir (net.handle.configDir), kept empty, so it
#              never reads or creates ~/.handle
# The jar dirs are keyed on the POM's checksum, like deploy/kafka/kafka.sh.
# Needs a JDK 17+ (javac, not only java) and, for the first fetch, mvn.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"
SRC="$HERE/HdlProbe.java"
# Read the version from the POM with sed: asking mvn costs seconds per call.
VERSION="$(sed -n 's:.*<handle.version>\(.*\)</handle.version>.*:\1:p' "$POM")"
CACHE="${IDRES_CACHE:-$HOME/.cache/idres}/handle-client/$VERSION"

log() { echo "client.sh: $*" >&2; }
die() { log "$*"; exit 1; }

WHAT="handle-client $VERSION"
# shellcheck source=deploy/maven.sh
. "$HERE/../maven.sh"

build() {
  maven_fetch handle-client
  mkdir -p "$CACHE/config"
  local class="$CACHE/classes/HdlProbe.class"
  if [[ -f "$class" && ! "$SRC" -nt "$class" ]]; then
    return 0
  fi
  command -v javac >/dev/null || die "javac not found: HdlProbe needs a JDK 17+ (e.g. openjdk-17-jdk-headless), not only the JRE"
  log "compiling HdlProbe into $CACHE/classes"
  local tmp="$CACHE/classes.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  javac --release 17 -encoding UTF-8 -Xlint:all -Werror -cp "$CACHE/lib/*" -d "$tmp" "$SRC" \
    || { rm -rf "$tmp"; die "javac failed"; }
  rm -rf "$CACHE/classes"; mv "$tmp" "$CACHE/classes"
}

run() {
  build
  # Small heap and no JIT tiers beyond C1: each probe is one short-lived request.
  exec java -Xms16m -Xmx128m -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dnet.handle.configDir="$CACHE/config" \
    -cp "$CACHE/classes:$CACHE/lib/*" HdlProbe "$@"
}

case "${1:-}" in
  "") build ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 [run ARGS...]" >&2; exit 1 ;;
esac
