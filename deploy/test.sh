#!/usr/bin/env bash
# The whole test suite on a fresh machine: install, lint, type-check, then pytest
# against a real PostgreSQL (embedded unless DATABASE_URL is set) and a real
# Apache Kafka broker (started here unless KAFKA_BOOTSTRAP is set, with its SASL
# credentials in KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD).
# Extra arguments go to pytest, e.g. deploy/test.sh -k store
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$SECONDS

bash deploy/setup.sh --dev

# The broker runs on Java 17+; its jars come from Maven Central through mvn. The Handle
# tests compile deploy/handle/HdlProbe.java: that needs the JDK (javac), not only the JRE.
if ! command -v java >/dev/null || ! command -v javac >/dev/null || ! command -v mvn >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "test: installing the Java 17 JDK and Maven from Debian's packages" >&2
    apt-get update -qq </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven </dev/null
  else
    echo "test: needs java and javac (JDK 17+) and mvn on PATH for the Kafka broker and the Handle client" >&2
    exit 1
  fi
fi
# The CNRI Handle client the Handle face is tested with (tests/resolver/handle), from
# Maven Central, cached like the broker's jars
echo "test: the CNRI Handle client (deploy/handle/client.sh)" >&2
bash deploy/handle/client.sh
# BIF's Java SDK (cn.bitfactory:bif-chain-sdk) the did:bid addresses are checked against
# (tests/schemas/test_bid_address.py), from Maven Central, cached the same way
echo "test: the BIF SDK (deploy/bif/sdk.sh)" >&2
bash deploy/bif/sdk.sh
# Node.js and npm, for the npm packages the tests run (GS1's digital-link.js, the DID
# clients), from Debian's packages
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "test: installing Node.js and npm from Debian's packages" >&2
    apt-get update -qq </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm </dev/null
  else
    echo "test: needs node and npm for the GS1 and DID client tests" >&2
    exit 1
  fi
fi
# GS1's Digital Link SDK (npm digital-link.js), with which the GS1 resolver tests make,
# check and compress the URIs they send; cached like the jars above
echo "test: GS1's digital-link.js (deploy/gs1/digital-link.sh)" >&2
bash deploy/gs1/digital-link.sh
# npm's stock DID clients the DID routes are tested with (tests/resolver/test_did_clients.py:
# did-resolver, @sphereon/did-uni-client), pinned in deploy/did/package-lock.json and
# installed once into ~/.cache/idres/did-clients
echo "test: the npm DID clients (deploy/did/clients.sh)" >&2
bash deploy/did/clients.sh

# Stock DNS software the DNS face is tested against (tests/resolver/dns): Knot's kdig
# asks it, Unbound resolves through it, Knot serves its zone as a secondary; all three
# from Debian's packages.
have_dns_peers() {
  command -v kdig >/dev/null &&
    { command -v unbound >/dev/null || [[ -x /usr/sbin/unbound ]]; } &&
    { command -v knotd >/dev/null || [[ -x /usr/sbin/knotd ]]; }
}
if ! have_dns_peers; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "test: installing kdig, Unbound and Knot from Debian's packages" >&2
    apt-get update -qq </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq knot-dnsutils unbound knot </dev/null
  else
    echo "test: needs kdig (knot-dnsutils), unbound and knotd (knot) for the DNS tests" >&2
    exit 1
  fi
fi

. .venv/bin/activate
echo "test: ruff" >&2
ruff check .
ruff format --check .
echo "test: mypy --strict" >&2
mypy
echo "test: the Go modules: the edge, the Handle load tool and deploy/check (gofmt, go vet, go test)" >&2
for module in resolver/edge benchmarks/handleperf deploy/check; do
  (
    cd "$module"
    unformatted="$(gofmt -l .)"
    [[ -z "$unformatted" ]] || { echo "gofmt: $module: $unformatted" >&2; exit 1; }
    go vet ./...
    go test -count=1 ./...
  )
done

if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
  IDRES_STATE="$(mktemp -d /tmp/idres-test-kafka.XXXXXX)"
  export IDRES_STATE
  export IDRES_KAFKA_STATE="$IDRES_STATE"  # the suite stops and resumes it (an outage)
  trap 'bash deploy/kafka/kafka.sh stop || true; rm -rf "$IDRES_STATE"' EXIT
  # KAFKA_BOOTSTRAP and the admin's KAFKA_SASL_* credentials, one KEY=VALUE a line
  lines="$(bash deploy/kafka/kafka.sh start)"
  while IFS= read -r kv; do
    [[ "$kv" =~ ^KAFKA_[A-Z_]+= ]] && export "${kv?}"
  done <<<"$lines"
fi
echo "test: pytest (Kafka at $KAFKA_BOOTSTRAP, PostgreSQL ${DATABASE_URL:+at $DATABASE_URL}${DATABASE_URL:-embedded})" >&2
status=0
python -m pytest "$@" || status=$?
echo "test: finished in $((SECONDS - started)) s" >&2
exit "$status"
