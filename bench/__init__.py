"""tripwire's benchmarks: `python -m bench.run` (or `make bench`) runs them all; see bench/README.md."""
