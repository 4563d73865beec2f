# Two commands to start: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lab bench clean

setup: $(STAMP)

# Reinstalls only when pyproject.toml changes; the package itself is editable.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

demo: setup
	$(BIN)/python -m whisperkit demo

# lint and import order, types, then the tests. The multi-node Ray cluster tests run one pytest
# process each: a Ray driver that loses its cluster ends its whole process (status 1, no summary),
# and one of them run after another did that, so each gets a driver of its own.
RAY_CLUSTER_TESTS := tests/core/corpus/test_ray_cluster.py
test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest --ignore=$(RAY_CLUSTER_TESTS)
	for test in $$($(BIN)/python -m pytest -q --collect-only $(RAY_CLUSTER_TESTS) | grep '::'); do \
		$(BIN)/python -m pytest -q -p no:cacheprovider "$$test" || exit 1; done

# the fast tier while you work: lint, types and every test that loads no Whisper model (under 2 minutes on 2 cores)
test-fast: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest --fast -q -rfE

lab: setup
	$(BIN)/jupyter lab notebooks/

bench: setup
	$(BIN)/python benchmarks/transcribe_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
