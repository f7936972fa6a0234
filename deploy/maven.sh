# Fetching jars from Maven Central into a cache, for the probes the tests run against
# idres (deploy/handle/client.sh, deploy/bif/sdk.sh). Sourced, not run: the caller
# sets POM (its pom.xml), CACHE (the folder to fill) and WHAT (a name for messages),
# and defines log and die.
#
# The cache is keyed on the POM's checksum, like deploy/kafka/kafka.sh's, and filled
# in a temp folder that is renamed when whole: an interrupted fetch never leaves a
# half-filled cache that looks done.

maven_quiet() {
  # Batch mode, no stdin (CI has none); Maven 3.8 -q still emits colour codes.
  mvn -q -B -Dstyle.color=never -f "$POM" "$@" </dev/null 2>&1 \
    | sed 's/\x1b\[[0-9;]*m//g' >&2
  return "${PIPESTATUS[0]}"
}

# maven_fetch [SOURCES_ARTIFACT]: the POM's runtime jars into $CACHE/lib, once; with
# SOURCES_ARTIFACT, that artifact's sources jar into $CACHE/sources too (for reading
# only: a failure to get it is not fatal).
maven_fetch() {
  local sum; sum="$(sha256sum "$POM" | cut -c1-64)"
  if [[ -f "$CACHE/pom.sha256" && "$(cat "$CACHE/pom.sha256")" == "$sum" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch $WHAT)"
  log "fetching $WHAT jars from Maven Central into $CACHE"
  local tmp="$CACHE.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  maven_quiet dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/lib" \
    || { rm -rf "$tmp"; die "mvn dependency:copy-dependencies failed"; }
  if [[ -n "${1:-}" ]]; then
    maven_quiet dependency:copy-dependencies -DincludeScope=runtime -DincludeArtifactIds="$1" \
        -Dclassifier=sources -DoutputDirectory="$tmp/sources" \
      || log "could not fetch the $1 sources jar (not needed to run)"
  fi
  echo "$sum" >"$tmp/pom.sha256"
  rm -rf "$CACHE"; mv "$tmp" "$CACHE"
}
