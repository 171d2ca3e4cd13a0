# The README's two commands: `make demo` and `make test`. Both set up the virtual environment first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Two test processes, each module in one of them (its module-scoped Spark data and clusters kept
# together): the suite waits on Spark, Py4J and process starts as much as on the CPU. The 25
# slowest tests are listed at the end, to see where the suite's time goes.
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=25

.PHONY: demo test lint format clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev,real]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vista-sql demo

test: $(STAMP) lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check vista_sql tests benchmarks
	$(VENV)/bin/ruff format --check vista_sql tests benchmarks
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format vista_sql tests benchmarks
	$(VENV)/bin/ruff check --fix vista_sql tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Real images for benchmarks/bench_real_layers.py: Debian's Fashion-MNIST and Open Clip Art
# packages (installed with apt-get on Debian-like machines; elsewhere, say what is needed), then
# the benchmark's three datasets under data/real/.
REAL_DEBS := dataset-fashion-mnist openclipart-png
.PHONY: real-data
real-data: $(STAMP)
	@missing=$$(for p in $(REAL_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null 2>&1; then \
			sudo=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
			$$sudo apt-get install -y $$missing; \
		else \
			echo "install the Debian packages $$missing (or copy their files to /usr/share)"; exit 1; \
		fi; \
	fi
	$(PY) benchmarks/bench_real_layers.py --datasets-only
