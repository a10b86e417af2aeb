# Two commands on a fresh machine: `make quickstart` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: quickstart test install install-test lint bench chromium postgres gpu-check

$(BIN)/python:
	$(PY) -m venv $(VENV)

# The stamp files re-run the install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

quickstart: install
	$(BIN)/python search.py start studies/quickstart.yaml --fresh

# tests/test_servers.py opens optuna-dashboard in the system Chromium (Debian package `chromium`;
# Playwright never downloads a browser). Where it cannot be installed, that test skips and says why.
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
		echo "warning: could not install chromium; the browser test will skip" >&2

# tests/test_readme.py and tests/search/records/test_postgres.py run a private PostgreSQL server
# (Debian package `postgresql`: its initdb and pg_ctl); where it cannot be installed, those tests
# skip and say why.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) || \
		echo "warning: could not install postgresql; the PostgreSQL tests will skip" >&2

test: install-test chromium postgres
	$(BIN)/python -m pytest -q --durations=15 -n 2 --dist loadscope --no-loadscope-reorder

lint: install-test
	$(BIN)/ruff check search trainables tests search.py

# Benchmarks print their figures and a last line `RATIO name=value ...` (or `SKIP reason`).
BENCHMARKS := orchestration data_pipeline trainable_efficiency search_efficiency gpu frontier \
	memory_estimate compile loader_vs_step
bench: install
	for b in $(BENCHMARKS); do $(BIN)/python benchmarks/$$b.py $(BENCH_ARGS) || exit 1; done

# On a machine with CUDA: the GPU tests, benchmarks/gpu.py, the memory estimate against the GPU's
# peak and a 4 x 0.25-GPU study, with their figures, in under 8 minutes. Without CUDA it says so
# and exits 0.
# A lent GPU machine starts bare with minutes to spare: only what the check needs (the project
# and pytest), with uv where the machine has it (several times faster than pip on the CUDA
# torch stack), else pip.
$(VENV)/.installed-gpu: pyproject.toml | $(BIN)/python
	if command -v uv >/dev/null; then uv pip install --python $(BIN)/python -e . pytest; \
	else $(BIN)/python -m pip install -e . pytest; fi
	touch $@

gpu-check: $(VENV)/.installed-gpu
	$(BIN)/python benchmarks/gpu_check.py $(BENCH_ARGS)
