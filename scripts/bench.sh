#!/usr/bin/env bash
# Every benchmark figure in one run: detection quality, agreement with the anchors, speed, memory.
# bench.run starts (and stops) the project's Kafka broker itself for the Kafka row.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv-bench/bin/python}" -m bench.run "$@"
