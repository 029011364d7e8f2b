#!/usr/bin/env bash
# The whole test suite: unit tests, then the ones that need the real Kafka broker and MLflow.
# Starts the broker from the project's own script and stops it on the way out, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHON

# The report and status-page tests open pages in a real headless browser; the dashboard test
# checks every query with promtool. Both come from Debian's packages.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if ((${#missing[@]})); then
  echo "installing Debian's ${missing[*]} for the browser and dashboard tests ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null) \
    || echo "could not install ${missing[*]}: the tests that need them will fail" >&2
fi

export KAFKA_PORT=${KAFKA_PORT:-19092}
export KAFKA_DATA=${KAFKA_DATA:-$PWD/.cache/kafka/test-run}
trap 'bash scripts/kafka.sh stop >/dev/null 2>&1 || true' EXIT
bash scripts/kafka.sh start >/dev/null
export TRIPWIRE_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT

TRIPWIRE_REQUIRE_BROWSER=1 "$PYTHON" -m pytest -q -p no:cacheprovider --doctest-modules tripwire/detectors tripwire/client tests "$@"
