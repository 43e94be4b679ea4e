# Two commands on a fresh machine with Python 3.11:
#   make demo   -- set up .venv and run the end-to-end demo
#   make test   -- set up .venv (with the Spark extra and Java 17) and run the test suite (every tier), on 2 pytest-xdist workers
#   make test-fast -- the fast tier only (no session warehouse, server, shared data or slow test), on 2 workers
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SPARK  := $(VENV)/.spark-installed

.PHONY: demo test test-fast setup bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

# the Spark engine's extra and a Java 17 runtime (from the machine's packages where missing)
$(SPARK): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,spark]' --config-settings editable_mode=compat
	command -v java >/dev/null 2>&1 || [ -n "$$JAVA_HOME" ] || \
	  { [ "$$(id -u)" = 0 ] && SUDO= || SUDO=sudo; \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq openjdk-17-jre-headless; } || \
	  echo "WARNING: no Java 17 runtime and none could be installed: the Spark tests will skip (fail under CI=true)"
	touch $(SPARK)

setup: $(STAMP) $(SPARK)

demo: $(STAMP)
	$(VENV)/bin/alpha demo

test: $(STAMP) $(SPARK)
	$(PY) -m pytest -q -n 2 --durations=25

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not integration"

bench: $(STAMP) $(SPARK)
	$(PY) benchmarks/skeleton.py
	$(PY) benchmarks/pit_join.py
	$(PY) benchmarks/factors.py
	$(PY) benchmarks/online.py
	$(PY) benchmarks/orchestration.py
	$(PY) benchmarks/nightly.py --symbols 500,1000,3000
	$(PY) benchmarks/research.py --symbols 500
	$(PY) benchmarks/spark.py --symbols 500,2000

clean:
	rm -rf .alpha
