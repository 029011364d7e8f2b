#!/usr/bin/env bash
# The whole test suite: ruff and mypy, then pytest (every docstring example in the package, the unit
# tests, the ones that need the real Kafka broker and MLflow).
# Starts the brokers from the project's own script and stops them on the way out, also on failure:
# the plaintext one every Kafka test uses, and a TLS and a SASL/PLAIN one for the security tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHON

# Lint and types first (seconds; [tool.ruff] and [tool.mypy] in pyproject.toml): a failure names the line.
"$PYTHON" -m ruff check .
"$PYTHON" -m mypy

# The report and status-page tests open pages in a real headless browser; the dashboard test
# checks every query with promtool; the sink tests post to a real Alertmanager. All come from
# Debian's packages.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
if ((${#missing[@]})); then
  echo "installing Debian's ${missing[*]} for the browser, dashboard and sink tests ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null) \
    || echo "could not install ${missing[*]}: the tests that need them will fail" >&2
fi

export KAFKA_PORT=${KAFKA_PORT:-19092}
export KAFKA_DATA=${KAFKA_DATA:-$PWD/.cache/kafka/test-run}
# The secured brokers: each its own port pair (client, controller = +1) and run dir.
SSL_PORT=${KAFKA_SSL_PORT:-$((KAFKA_PORT + 2))}
SASL_PORT=${KAFKA_SASL_PORT:-$((KAFKA_PORT + 4))}
SSL_DATA=$KAFKA_DATA-ssl
SASL_DATA=$KAFKA_DATA-sasl
stop_brokers() {
  bash scripts/kafka.sh stop >/dev/null 2>&1 || true
  KAFKA_PORT=$SSL_PORT KAFKA_DATA=$SSL_DATA bash scripts/kafka.sh stop >/dev/null 2>&1 || true
  KAFKA_PORT=$SASL_PORT KAFKA_DATA=$SASL_DATA bash scripts/kafka.sh stop >/dev/null 2>&1 || true
}
trap stop_brokers EXIT
bash scripts/kafka.sh fetch
# Started side by side (each waits until produce/consume works); any failure stops the run.
bash scripts/kafka.sh start >/dev/null &
plain=$!
KAFKA_SECURITY=ssl KAFKA_PORT=$SSL_PORT KAFKA_DATA=$SSL_DATA bash scripts/kafka.sh start >/dev/null &
tls=$!
KAFKA_SECURITY=sasl_plaintext KAFKA_PORT=$SASL_PORT KAFKA_DATA=$SASL_DATA bash scripts/kafka.sh start >/dev/null &
sasl=$!
wait "$plain"
wait "$tls"
wait "$sasl"
export TRIPWIRE_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT

# What the security tests read (tests/test_secure_kafka.py): each broker's client.env, renamed.
client_setting() { grep "^TRIPWIRE_KAFKA_$2=" "$1/client.env" | cut -d= -f2-; }
export TRIPWIRE_TEST_SSL_BOOTSTRAP=127.0.0.1:$SSL_PORT
export TRIPWIRE_TEST_SSL_CAFILE=$(client_setting "$SSL_DATA" SSL_CAFILE)
export TRIPWIRE_TEST_SASL_BOOTSTRAP=127.0.0.1:$SASL_PORT
export TRIPWIRE_TEST_SASL_USERNAME=$(client_setting "$SASL_DATA" SASL_USERNAME)
export TRIPWIRE_TEST_SASL_PASSWORD=$(client_setting "$SASL_DATA" SASL_PASSWORD)

TRIPWIRE_REQUIRE_BROWSER=1 "$PYTHON" -m pytest -q -p no:cacheprovider --doctest-modules tripwire tests "$@"
