# The two commands of the README. Each makes its own .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[datasets,plots]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/gpudl hello

# Everything runs on the CPU: the NumPy backend, and the CUDA kernels under Numba's
# simulator. The second step runs every gpu-marked test on the GPU code path through a strict
# CuPy stand-in (tests/fakecupy: host memory, kernels in the simulator, transfers counted).
# The third compiles every kernel signature to real PTX (no GPU needed).
test: $(VENV)/.test-installed
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q -m "not slow and not gpu" $(PYTEST_ARGS) tests
	NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=tests/fakecupy $(BIN)/python -m pytest -q -m "gpu and not slow" $(PYTEST_ARGS) tests
	$(BIN)/python -m pytest -q -m ptx tests/kernels

bench: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q benchmarks --benchmark-only

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
