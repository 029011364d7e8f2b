# The two commands a new user needs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= test
# The versions CI tested (`make lock` refreshes them): every install below is constrained to them.
LOCK ?= constraints.txt

.PHONY: setup demo test bench lock broker-start broker-stop clean

$(BIN)/.installed-$(EXTRAS): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[$(EXTRAS)]'
	@touch $@

setup: $(BIN)/.installed-$(EXTRAS)

demo: setup
	$(BIN)/tripwire demo

test: setup
	PYTHON=$(abspath $(BIN)/python) bash scripts/test.sh

# The benchmark's anchors (NannyML, Evidently) need pandas < 3: they get a virtualenv of their own.
bench:
	$(MAKE) setup VENV=.venv-bench EXTRAS=test,bench LOCK=constraints-bench.txt
	PYTHON=$(abspath .venv-bench/bin/python) bash scripts/bench.sh

# Re-resolve every dependency from pyproject.toml in fresh virtualenvs and pin the result.
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh

broker-start: setup
	PYTHON=$(abspath $(BIN)/python) bash scripts/kafka.sh start

broker-stop:
	bash scripts/kafka.sh stop

clean:
	rm -rf $(VENV) .venv-bench .cache .pytest_cache
