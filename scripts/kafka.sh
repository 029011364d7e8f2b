#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) for tripwire's tests, benchmarks and demos.
#
#   scripts/kafka.sh fetch    download the broker jars once (Maven Central)
#   scripts/kafka.sh start    clean data dir, format, launch, wait until produce/consume works
#   scripts/kafka.sh resume   launch again on the data dir of the last start (topics and records kept)
#   scripts/kafka.sh stop     SIGTERM, then SIGKILL after 20 s; fine if not running
#   scripts/kafka.sh status   exit 0 if running, 3 if not
#   scripts/kafka.sh cluster-id [N]   print N (default 1) fresh KRaft cluster ids, one a line
#
# Environment:
#   TRIPWIRE_CACHE  cache root                      (default: <repo>/.cache)
#   KAFKA_DATA      run dir, WIPED on every start   (default: $TRIPWIRE_CACHE/kafka/run)
#   KAFKA_PORT      client port; controller = +1    (default: 9092)
#   KAFKA_VERSION   org.apache.kafka:kafka_2.13     (default: 4.0.2; 3.9.x also works)
#   KAFKA_HEAP      JVM max heap                    (default: 512m)
#   KAFKA_READY_TIMEOUT  seconds to wait for start  (default: 90)
#   PYTHON          interpreter with aiokafka, used for the readiness probe (default: python3)
#   KAFKA_SECURITY  plaintext | ssl | sasl_plaintext: the client listener  (default: plaintext)
#                   ssl: a CA and a broker certificate for 127.0.0.1 are made in the run dir
#                   ($RUN/tls/ca.pem is the CA clients trust); sasl_plaintext: SASL/PLAIN with
#                   user KAFKA_SASL_USER (default: tripwire) and KAFKA_SASL_PASSWORD (default:
#                   random per start). Either way $RUN/client.env holds what a client needs.
#
# There is no Docker on the target machines, so the broker runs straight from the
# Maven artifacts: kafka_2.13 plus its runtime dependencies, plus a logging backend
# which the pom deliberately leaves to the distribution.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TRIPWIRE_CACHE:-$REPO/.cache}"
KAFKA_HOME="$CACHE/kafka"
LIBS="$KAFKA_HOME/libs"
MARKER="$LIBS/.fetched"
RUN="${KAFKA_DATA:-$KAFKA_HOME/run}"
PIDFILE="$RUN/kafka.pid"
LOGFILE="$RUN/kafka.log"

KAFKA_VERSION="${KAFKA_VERSION:-4.0.2}"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT=$((PORT + 1))
HOST=127.0.0.1
BOOTSTRAP="$HOST:$PORT"
HEAP="${KAFKA_HEAP:-512m}"
READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-90}"
PYTHON="${PYTHON:-python3}"
SECURITY="${KAFKA_SECURITY:-plaintext}"
case "$SECURITY" in
    plaintext) LISTENER=PLAINTEXT ;;
    ssl) LISTENER=SSL ;;
    sasl_plaintext) LISTENER=SASL_PLAINTEXT ;;
    *) echo "kafka.sh: error: KAFKA_SECURITY must be plaintext, ssl or sasl_plaintext (got '$SECURITY')" >&2; exit 2 ;;
esac
TLS="$RUN/tls"
CLIENT_ENV="$RUN/client.env"

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Kafka 4 logs through log4j2; 3.x through log4j 1.x, for which reload4j is the
# maintained drop-in.  Both configs send WARN+ to stdout, which `start` redirects
# to $RUN/kafka.log: one writer, so JVM crash output and log lines stay in order.
is_kafka4() { [[ "${KAFKA_VERSION%%.*}" -ge 4 ]]; }

logging_deps() {
    if is_kafka4; then
        dep org.apache.logging.log4j log4j-slf4j-impl 2.24.3
        dep org.apache.logging.log4j log4j-core 2.24.3
    else
        dep org.slf4j slf4j-reload4j 1.7.36
        dep ch.qos.reload4j reload4j 1.2.25
    fi
}

dep() {
    printf '    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version></dependency>\n' "$1" "$2" "$3"
}

write_logging_config() {
    cat >"$KAFKA_HOME/log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- WARN only: INFO from a KRaft broker is several MB per test run. -->
<Configuration status="WARN">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="stdout"/></Root>
  </Loggers>
</Configuration>
EOF
    cat >"$KAFKA_HOME/log4j.properties" <<'EOF'
# WARN only: INFO from a KRaft broker is several MB per test run.
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

logging_jvm_flags() {
    if is_kafka4; then
        echo "-Dlog4j2.configurationFile=$KAFKA_HOME/log4j2.xml"
    else
        echo "-Dlog4j.configuration=file:$KAFKA_HOME/log4j.properties"
    fi
}

cmd_fetch() {
    # The marker records the version, so changing KAFKA_VERSION refetches.
    if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$KAFKA_VERSION" ]]; then
        write_logging_config
        return 0
    fi
    command -v mvn >/dev/null || die "maven (mvn) is required to fetch Kafka"
    local t0
    t0="$(now)"
    log "fetching kafka_2.13 $KAFKA_VERSION from Maven Central ..."
    mkdir -p "$KAFKA_HOME"
    cat >"$KAFKA_HOME/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/kafka.sh: only used to resolve the broker's jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.tripwire</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
$(dep org.apache.kafka kafka_2.13 "$KAFKA_VERSION")
$(logging_deps)
  </dependencies>
  <build>
    <plugins>
      <!-- Pinned: the plugin version Maven would pick by default is ancient. -->
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>3.8.1</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
    # Copy into a scratch dir and swap it in, so an interrupted download never
    # leaves a half-filled libs/ that looks complete.
    rm -rf "$LIBS.tmp"
    # Debian's Maven emits stray ANSI resets even with -q -B; keep its output
    # out of the way unless something goes wrong.
    if ! mvn -q -B -f "$KAFKA_HOME/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp" >"$KAFKA_HOME/mvn.log" 2>&1; then
        cat "$KAFKA_HOME/mvn.log" >&2
        die "maven could not resolve kafka_2.13 $KAFKA_VERSION (see $KAFKA_HOME/mvn.log)"
    fi
    rm -rf "$LIBS"
    mv "$LIBS.tmp" "$LIBS"
    echo "$KAFKA_VERSION" >"$MARKER"
    write_logging_config
    log "fetched $(ls "$LIBS"/*.jar | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $(since "$t0")s"
}

# Pid of the running broker, or nothing.  Checks the command line too, so a
# stale pid file whose number was reused by another process is ignored.
broker_pid() {
    [[ -f "$PIDFILE" ]] || return 0
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
        echo "$pid"
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

write_server_properties() {
    cat >"$RUN/server.properties" <<EOF
# Generated by scripts/kafka.sh: single-node KRaft, loopback only, throwaway data.
process.roles=broker,controller
node.id=1
# Static single-voter quorum: formats without --standalone and works on 3.9 too.
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=$LISTENER://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=$LISTENER://$HOST:$PORT
inter.broker.listener.name=$LISTENER
listener.security.protocol.map=$LISTENER:$LISTENER,CONTROLLER:PLAINTEXT
log.dirs=$RUN/data

# One broker: every replication factor / ISR must be 1 or internal topics
# (__consumer_offsets, __transaction_state) can never be created.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions: creating the default 50 slows the first group join.
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=4

# Faust and the tests create topics implicitly; 4 partitions by default.
auto.create.topics.enable=true
num.partitions=4
# Without this every first consumer-group join idles for 3 s.
group.initial.rebalance.delay.ms=0

# Sized for a 2-core CI box and a 512 MB heap: the cleaner's default 128 MB
# dedupe buffer alone would take a quarter of it (faust changelogs are compacted,
# so the cleaner has to stay on).
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
EOF
    security_properties >>"$RUN/server.properties"
}

# A test CA and a broker certificate for $HOST, signed by it, as PKCS12 stores for the broker.
# The store password only guards throwaway files in the run dir.
make_certificates() {
    local pass=tripwire-test
    mkdir -p "$TLS"
    (
        cd "$TLS"
        openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=tripwire test CA" \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=$HOST" -keyout broker.key -out broker.csr
        printf 'subjectAltName=IP:%s,DNS:localhost\n' "$HOST" >broker.ext
        openssl x509 -req -days 7 -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -extfile broker.ext -out broker.pem
        openssl pkcs12 -export -name broker -in broker.pem -inkey broker.key -certfile ca.pem \
            -passout "pass:$pass" -out broker.p12
        keytool -importcert -noprompt -alias ca -file ca.pem -storetype PKCS12 \
            -keystore truststore.p12 -storepass "$pass"
    ) >"$RUN/tls.log" 2>&1 || { cat "$RUN/tls.log" >&2; die "could not make the test certificates"; }
}

# The client listener's settings (appended to server.properties), and $CLIENT_ENV: the
# TRIPWIRE_KAFKA_* variables a tripwire client needs for this broker.
security_properties() {
    local pass=tripwire-test
    {
        echo "TRIPWIRE_KAFKA_BOOTSTRAP=$BOOTSTRAP"
        echo "TRIPWIRE_KAFKA_SECURITY_PROTOCOL=$LISTENER"
    } >"$CLIENT_ENV"
    chmod 600 "$CLIENT_ENV"
    case "$SECURITY" in
        ssl)
            make_certificates
            cat <<EOF
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$pass
ssl.key.password=$pass
ssl.truststore.type=PKCS12
ssl.truststore.location=$TLS/truststore.p12
ssl.truststore.password=$pass
ssl.client.auth=none
EOF
            echo "TRIPWIRE_KAFKA_SSL_CAFILE=$TLS/ca.pem" >>"$CLIENT_ENV"
            ;;
        sasl_plaintext)
            local user="${KAFKA_SASL_USER:-tripwire}" password="${KAFKA_SASL_PASSWORD:-}"
            [[ -n "$password" ]] || password="$(head -c 18 /dev/urandom | base64 | tr '+/' 'xy')"
            [[ "$user$password" =~ ^[A-Za-z0-9._-]+$ ]] ||
                die "KAFKA_SASL_USER and KAFKA_SASL_PASSWORD: letters, digits, '.', '_' and '-' only"
            cat <<EOF
sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$user" password="$password" user_$user="$password";
EOF
            {
                echo "TRIPWIRE_KAFKA_SASL_MECHANISM=PLAIN"
                echo "TRIPWIRE_KAFKA_SASL_USERNAME=$user"
                echo "TRIPWIRE_KAFKA_SASL_PASSWORD=$password"
            } >>"$CLIENT_ENV"
            ;;
    esac
}

# A KRaft cluster id: 16 random bytes, base64url without padding. The storage tool reads an
# argument that starts with '-' as an option (one id in 64 did), so draw again until it starts
# with a letter or digit.
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64)"
        id="${id//+/-}"
        id="${id//\//_}"
        id="${id%%=*}"
        [[ "$id" =~ ^[A-Za-z0-9] ]] && break
    done
    echo "$id"
}

cmd_cluster_id() {
    local n="${1:-1}" i
    [[ "$n" =~ ^[0-9]+$ ]] || die "cluster-id takes a count, got '$n'"
    for ((i = 0; i < n; i++)); do new_cluster_id; done
}

# Launch the broker on the prepared $RUN and wait until it really serves (java options as "$@").
launch() {
    # setsid: the broker must outlive the shell (and process group) that started
    # it.  The inner sh writes its own pid, which exec hands on to the JVM.
    # The redirections sit on the subshell, not on setsid: a subshell that kept the caller's
    # stdout would hold a $(...) or a captured pipe open for as long as the broker runs.
    (cd "$RUN" && exec setsid nohup sh -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
        java "$@" kafka.Kafka "$RUN/server.properties") >>"$LOGFILE" 2>&1 </dev/null &
    local i
    for i in $(seq 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done

    # A listening port is not enough: right after start the broker can accept
    # connections while metadata / the group coordinator are not ready yet, so
    # probe with a real produce, fetch and offset commit.
    # It connects the way clients will: with $CLIENT_ENV's protocol, CA and SASL credentials.
    if ! "$PYTHON" - "$BOOTSTRAP" "$READY_TIMEOUT" "$(cat "$PIDFILE")" "$CLIENT_ENV" <<'EOF'; then
import asyncio, logging, os, sys, time, uuid

logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.helpers import create_ssl_context

bootstrap, timeout, pid, client_env = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
TOPIC = "__tripwire_ready"
env = dict(line.rstrip("\n").split("=", 1) for line in open(client_env) if "=" in line)
security = {"security_protocol": env["TRIPWIRE_KAFKA_SECURITY_PROTOCOL"]}
if "TRIPWIRE_KAFKA_SSL_CAFILE" in env:
    security["ssl_context"] = create_ssl_context(cafile=env["TRIPWIRE_KAFKA_SSL_CAFILE"])
if "TRIPWIRE_KAFKA_SASL_PASSWORD" in env:
    security.update(sasl_mechanism=env["TRIPWIRE_KAFKA_SASL_MECHANISM"],
                    sasl_plain_username=env["TRIPWIRE_KAFKA_SASL_USERNAME"],
                    sasl_plain_password=env["TRIPWIRE_KAFKA_SASL_PASSWORD"])


async def probe():
    token = uuid.uuid4().hex.encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5000, **security)
    try:
        await producer.start()
        meta = await producer.send_and_wait(TOPIC, token, partition=0)
    finally:
        await producer.stop()
    tp = TopicPartition(TOPIC, meta.partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=TOPIC, enable_auto_commit=False, request_timeout_ms=5000, **security
    )
    try:
        await consumer.start()
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        msg = await asyncio.wait_for(consumer.getone(), 10)
        # Also creates __consumer_offsets, so the first real consumer group is fast.
        await consumer.commit({tp: msg.offset + 1})
        return msg.value == token
    finally:
        await consumer.stop()


async def main():
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit("broker process exited")
        try:
            if await asyncio.wait_for(probe(), max(1.0, deadline - time.monotonic())):
                return
        except Exception as exc:  # not up yet: connection refused, no leader, ...
            last = exc
        await asyncio.sleep(0.5)
    sys.exit(f"not ready after {timeout:.0f}s (last error: {last!r})")


asyncio.run(main())
EOF
        log "broker did not become ready; last lines of $LOGFILE:"
        tail -n 60 "$LOGFILE" >&2
        cmd_stop
        exit 1
    fi
}

java_options() {
    JAVA_OPTS=(-Xms256m "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -Djava.awt.headless=true "$(logging_jvm_flags)" -cp "$LIBS/*")
}

cmd_start() {
    local t0
    t0="$(now)"
    cmd_fetch
    command -v java >/dev/null || die "java (17+) is required"
    "$PYTHON" -c 'import aiokafka' 2>/dev/null ||
        die "the readiness probe needs aiokafka; point PYTHON at the project's venv (now: $PYTHON)"

    # start always means a clean broker; never wipe the data dir under a live one.
    if [[ -n "$(broker_pid)" ]]; then
        log "a broker is already running from $RUN; restarting it clean"
        cmd_stop
    fi
    port_in_use "$PORT" && die "port $PORT is already in use (set KAFKA_PORT)"
    port_in_use "$CONTROLLER_PORT" && die "port $CONTROLLER_PORT is already in use (set KAFKA_PORT)"

    # Refuse to wipe a directory we did not create (e.g. KAFKA_DATA=$HOME by mistake).
    if [[ -d "$RUN" && -n "$(ls -A "$RUN")" && ! -f "$RUN/server.properties" ]]; then
        die "$RUN is not empty and not a kafka.sh run dir; refusing to wipe it"
    fi
    rm -rf "$RUN"
    mkdir -p "$RUN/data"
    write_server_properties

    java_options
    local java_opts=("${JAVA_OPTS[@]}")

    local cluster_id
    cluster_id="$(new_cluster_id)"
    if ! java "${java_opts[@]}" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$RUN/server.properties" >"$LOGFILE" 2>&1; then
        tail -n 40 "$LOGFILE" >&2
        die "storage format failed"
    fi

    launch "${java_opts[@]}"
    log "kafka $KAFKA_VERSION ($LISTENER) ready in $(since "$t0")s (pid $(cat "$PIDFILE"), data $RUN, client settings $CLIENT_ENV)"
    echo "$BOOTSTRAP"
}

# Start the broker again on the data dir a previous `start` made (after `stop`): its topics,
# records, committed offsets and client settings are kept, as after a broker restart in production.
cmd_resume() {
    local t0
    t0="$(now)"
    [[ -f "$RUN/server.properties" && -d "$RUN/data" ]] || die "$RUN has no broker data to resume; use start"
    [[ -n "$(broker_pid)" ]] && die "a broker is already running from $RUN"
    port_in_use "$PORT" && die "port $PORT is already in use (set KAFKA_PORT)"
    java_options
    launch "${JAVA_OPTS[@]}"
    log "kafka $KAFKA_VERSION ($LISTENER) resumed in $(since "$t0")s (pid $(cat "$PIDFILE"), data $RUN)"
    echo "$BOOTSTRAP"
}

cmd_stop() {
    local pid i
    pid="$(broker_pid)"
    if [[ -z "$pid" ]]; then
        rm -f "$PIDFILE"
        log "not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    # Controlled shutdown of a single node takes a few seconds; 20 s is generous.
    for i in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM for 20 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$PIDFILE"
    log "stopped (pid $pid)"
}

cmd_status() {
    local pid
    pid="$(broker_pid)"
    if [[ -n "$pid" ]]; then
        echo "running: pid $pid, bootstrap $BOOTSTRAP, data $RUN"
    else
        echo "not running"
        exit 3
    fi
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    resume) cmd_resume ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    cluster-id) cmd_cluster_id "${2:-1}" ;;
    *)
        echo "usage: $0 {fetch|start|resume|stop|status|cluster-id [N]}" >&2
        exit 2
        ;;
esac
