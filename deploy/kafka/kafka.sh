#!/usr/bin/env bash
# Run a real single-node Apache Kafka broker (KRaft, combined broker+controller)
# for tests and CI, built only from org.apache.kafka jars on Maven Central.
#
#   kafka.sh fetch          resolve the broker jars into the cache (once)
#   kafka.sh start [PORT]   clean start; prints the KAFKA_* lines below
#   kafka.sh stop           stop the broker started by `start` (idempotent)
#   kafka.sh resume         start it again on the same port with the data it had
#   kafka.sh status         say whether it runs (exit 0 if running, 1 if not)
#
# Secured as an operator would run it: the one client listener is SASL_PLAINTEXT
# with SCRAM-SHA-512, KRaft's StandardAuthorizer decides every request,
# allow.everyone.if.no.acl.found=false, and only User:admin is a super user. The
# admin's SCRAM credential is written at format time (kafka-storage --add-scram,
# KIP-900) because KRaft keeps SCRAM credentials in its metadata log. The controller
# listener uses SASL/PLAIN with the same admin (KRaft cannot use SCRAM there: the
# controller would need the metadata log to check the credential it guards).
# Other principals and their ACLs: `idres kafka-acl` (sync/kafka_acl.py).
# Loopback only and no TLS: this is the test and CI broker; production adds TLS
# (SASL_SSL) so the SCRAM exchange and the data are not readable on the wire.
#
# stdout, one KEY=VALUE a line (deploy/test.sh and tests/conftest.py export them):
#   KAFKA_BOOTSTRAP=127.0.0.1:PORT
#   KAFKA_SASL_MECHANISM=SCRAM-SHA-512
#   KAFKA_SASL_USERNAME=admin
#   KAFKA_SASL_PASSWORD=<random per start, kept in $IDRES_STATE/admin.password>
# Progress and errors go to stderr.
#
# Env: IDRES_CACHE (default ~/.cache/idres), IDRES_STATE (default /tmp/idres-kafka),
#      KAFKA_HEAP_OPTS (default -Xms128m -Xmx512m), KAFKA_START_TIMEOUT (default 60 s),
#      KAFKA_ADMIN_PASSWORD (default: random on each `start`).
# Needs java 17+, python3 (stdlib only) and, for the first fetch, mvn.
# Version (pom.xml): 3.9.x, the last 3.x line. 4.x also passed our aiokafka
# 0.14 checks, but aiokafka does not declare 4.x support yet and 4.x dropped
# old protocol versions; switching needs log4j2 jars instead of reload4j.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"
# Read the version from the POM with sed: asking mvn costs seconds per call.
VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
CACHE="${IDRES_CACHE:-$HOME/.cache/idres}/kafka/$VERSION"
STATE="${IDRES_STATE:-/tmp/idres-kafka}"
PIDFILE="$STATE/kafka.pid"
PASSFILE="$STATE/admin.password"
ADMIN=admin
MECHANISM=SCRAM-SHA-512
LOGDIR="$STATE/logs"
TIMEOUT="${KAFKA_START_TIMEOUT:-60}"

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }

fetch() {
  # The jar dir is keyed on the POM's checksum, so editing the POM refetches;
  # it holds copies (not ~/.m2 paths), so it stays valid if ~/.m2 is wiped.
  local sum; sum="$(sha256sum "$POM" | cut -c1-64)"
  if [[ -f "$CACHE/pom.sha256" && "$(cat "$CACHE/pom.sha256")" == "$sum" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch Kafka $VERSION)"
  log "fetching Kafka $VERSION jars from Maven Central into $CACHE"
  local tmp="$CACHE.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # Batch mode, no stdin (CI has none); Maven 3.8 -q still emits colour codes,
  # hence the sed. Copy to a temp dir and rename, so an interrupted fetch never
  # leaves a half-filled cache that looks done.
  mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp/lib" </dev/null 2>&1 \
      | sed 's/\x1b\[[0-9;]*m//g' >&2 \
    || { rm -rf "$tmp"; die "mvn dependency:copy-dependencies failed"; }
  echo "$sum" >"$tmp/pom.sha256"
  rm -rf "$CACHE"; mv "$tmp" "$CACHE"
}

# Our pid only if it is alive and is still our broker (guards against pid reuse).
running_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $STATE/server.properties" || return 1
  echo "$pid"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Ready = the broker authenticates the admin with SCRAM-SHA-512 (RFC 5802) and then
# answers a Metadata request listing itself: a bare TCP connect is not enough.
# python3 stdlib only (no venv needed). SaslHandshake v1, SaslAuthenticate v0 and
# Metadata v4 are accepted by Kafka 1.0 through 4.x.
probe() {  # port, password file (the password itself never on a command line)
  python3 - "$1" "$ADMIN" "$2" <<'PY'
import base64, hashlib, hmac, os, socket, struct, sys
port, user = int(sys.argv[1]), sys.argv[2]
with open(sys.argv[3], "rb") as f:
    password = f.read().strip()

def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b

def request(sock, key, version, corr, body):
    msg = struct.pack(">hhi", key, version, corr) + string("idres-probe") + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", recv(sock, 4))
    r = recv(sock, size)
    if struct.unpack(">i", r[:4])[0] != corr:
        raise ValueError("wrong correlation id")
    return r[4:]

def recv(sock, n):
    b = b""
    while len(b) < n:
        c = sock.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b

def authenticate(sock, corr, payload):
    r = request(sock, 36, 0, corr, struct.pack(">i", len(payload)) + payload)
    (err, mlen) = struct.unpack(">hh", r[:4])
    if err:
        raise PermissionError(err)
    at = 4 + max(mlen, 0)
    (blen,) = struct.unpack(">i", r[at:at + 4])
    return r[at + 4:at + 4 + blen]

def hmac512(key, msg):
    return hmac.new(key, msg, hashlib.sha512).digest()

try:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        r = request(s, 17, 1, 1, string("SCRAM-SHA-512"))
        if struct.unpack(">h", r[:2])[0]:
            sys.exit(1)
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n={user},r={nonce}"
        server_first = authenticate(s, 2, ("n,," + first_bare).encode()).decode()
        fields = dict(f.split("=", 1) for f in server_first.split(","))
        if not fields["r"].startswith(nonce):
            sys.exit(1)
        salted = hashlib.pbkdf2_hmac(
            "sha512", password, base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac512(salted, b"Client Key")
        final_bare = f"c=biws,r={fields['r']}"
        auth_message = f"{first_bare},{server_first},{final_bare}".encode()
        signature = hmac512(hashlib.sha512(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        authenticate(s, 3, f"{final_bare},p={base64.b64encode(proof).decode()}".encode())
        r = request(s, 3, 4, 7, struct.pack(">ib", -1, 0))
    _throttle, nbrokers = struct.unpack(">ii", r[:8])
    sys.exit(0 if nbrokers >= 1 else 1)
except Exception:
    sys.exit(1)
PY
}

start() {
  local port="${1:-}"
  fetch
  # Every start is clean: stop a previous broker of ours and wipe its data.
  stop
  # Remove only what we create, in case IDRES_STATE points somewhere shared.
  rm -rf "$STATE/data" "$LOGDIR"; mkdir -p "$STATE/data" "$LOGDIR"
  if [[ -n "$port" ]]; then
    # Fail fast (and never mistake another broker for ours) if PORT is taken.
    python3 -c 'import socket,sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null \
      || die "port $port on 127.0.0.1 is already in use"
  else
    port="$(free_port)"
  fi
  local cport; cport="$(free_port)"
  while [[ "$cport" == "$port" ]]; do cport="$(free_port)"; done
  # Letters and digits only: the password sits inside JAAS and --add-scram quoting.
  local password="${KAFKA_ADMIN_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_hex(24))')}"
  [[ "$password" =~ ^[A-Za-z0-9]+$ ]] || die "KAFKA_ADMIN_PASSWORD: letters and digits only"
  (umask 077; echo "$password" >"$PASSFILE")

  (umask 077; cat >"$STATE/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=CLIENT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=CLIENT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT
# Clients and the broker itself: SCRAM-SHA-512 against the credentials in KRaft.
listener.name.client.sasl.enabled.mechanisms=$MECHANISM
sasl.mechanism.inter.broker.protocol=$MECHANISM
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$ADMIN" password="$password";
# Broker to controller: PLAIN with the one user this file names.
listener.name.controller.sasl.enabled.mechanisms=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$ADMIN" password="$password" user_$ADMIN="$password";
# Every request is authorized; what no ACL allows is refused.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$ADMIN
log.dirs=$STATE/data
# One broker: every replication factor / ISR must be 1 or writes stall.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
default.replication.factor=1
# Few internal partitions: the first group/transaction coordinator lookup
# creates these topics, and 50 partitions each is slow on 2 cores.
offsets.topic.num.partitions=3
transaction.state.log.num.partitions=3
num.partitions=3
auto.create.topics.enable=true
# Tests join groups constantly; don't wait 3 s for more members.
group.initial.rebalance.delay.ms=0
EOF
  )

  # reload4j config: broker logs go to a file, not to our stdout.
  cat >"$STATE/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$LOGDIR/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
EOF

  local java_cp="$CACHE/lib/*"
  local cluster_id
  # Same shape as `StorageTool random-uuid` (22-char url-safe base64) without
  # paying a JVM start; avoid a leading '-' so it is not parsed as an option.
  cluster_id="$(python3 -c 'import base64,os
while True:
    u = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not u.startswith("-"): print(u); break')"
  java -cp "$java_cp" -Dlog4j.configuration="file:$STATE/log4j.properties" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$STATE/server.properties" \
      --add-scram "$MECHANISM=[name=$ADMIN,password=$password]" \
      </dev/null >"$LOGDIR/format.log" 2>&1 \
    || { cat "$LOGDIR/format.log" >&2; die "storage format failed"; }

  launch "$port"
}

# Start the broker configured in $STATE on PORT and wait until it answers.
launch() {
  local port="$1"
  local java_cp="$CACHE/lib/*"
  # setsid + no stdin: the broker must not hold the caller's terminal or get
  # its signals (CI runs us with no stdin). stdout/stderr only carry JVM crashes.
  # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of words
  setsid java ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true -Dkafka.logs.dir="$LOGDIR" \
      -Dlog4j.configuration="file:$STATE/log4j.properties" \
      -cp "$java_cp" kafka.Kafka "$STATE/server.properties" \
      </dev/null >"$LOGDIR/stdout.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  echo "127.0.0.1:$port" >"$STATE/bootstrap"

  local deadline=$((SECONDS + TIMEOUT))
  until probe "$port" "$PASSFILE"; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
      log "broker not ready on port $port after $((SECONDS - deadline + TIMEOUT)) s"
      # The cause is usually an ERROR line buried under shutdown noise: show both.
      { echo "--- first errors in $LOGDIR/server.log:"
        grep -E '\] (ERROR|FATAL) ' "$LOGDIR/server.log" | head -n 10
        echo "--- tail:"; tail -n 20 "$LOGDIR/server.log"
        cat "$LOGDIR/stdout.log"; } >&2 2>/dev/null || true
      stop
      exit 1
    fi
    sleep 0.5
  done
  log "Kafka $VERSION ready (pid $pid, logs in $LOGDIR)"
  print_env
}

# What a client needs: the bootstrap line (its format predates SASL; parsers rely on
# it) and the admin's credentials, one KEY=VALUE a line.
print_env() {
  echo "KAFKA_BOOTSTRAP=$(cat "$STATE/bootstrap")"
  echo "KAFKA_SASL_MECHANISM=$MECHANISM"
  echo "KAFKA_SASL_USERNAME=$ADMIN"
  echo "KAFKA_SASL_PASSWORD=$(cat "$PASSFILE")"
}

# Start the broker again on its port with the data it had (after `stop`): an outage
# that ends, as opposed to `start`, which always begins empty.
resume() {
  [[ -f "$STATE/server.properties" && -f "$STATE/bootstrap" && -f "$PASSFILE" ]] \
    || die "nothing to resume in $STATE (run start first)"
  fetch
  if running_pid >/dev/null; then log "already running"; print_env; return 0; fi
  local bootstrap; bootstrap="$(cat "$STATE/bootstrap")"
  launch "${bootstrap##*:}"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then rm -f "$PIDFILE"; return 0; fi
  log "stopping broker pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  # Controlled shutdown of one node is normally a few seconds; don't hang CI.
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive after 20 s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
  fi
  rm -f "$PIDFILE"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    echo "running pid=$pid bootstrap=$(cat "$STATE/bootstrap" 2>/dev/null) version=$VERSION"
  else
    echo "stopped"
    return 1
  fi
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "${1:-}" ;;
  resume) resume ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 {fetch|start [PORT]|stop|resume|status}" >&2; exit 2 ;;
esac
