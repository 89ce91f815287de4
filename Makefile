# One entry point for people and CI. Everything installs into .venv with the tested pins.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
TORCH   = torch==2.13.0

.PHONY: install demo test test-slow gpu-check lint bench-deps bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/lightning-xai fit --config configs/quickstart.yaml
	@echo "Done. Inspect the run with: $(BIN)/tensorboard --logdir lightning_logs"

test: install
	$(BIN)/python -m pytest -q

# Long fault-injection tests (30 random SIGKILLs, more DDP disagreements); CI runs them too.
test-slow: install
	$(BIN)/python -m pytest -q -m slow

# On a machine with a CUDA device: the GPU-marked tests, then the data-attribution benchmark at
# N = 50,000 with absolute times.
gpu-check: install
	$(BIN)/python -m pytest -q -m gpu tests
	nice $(BIN)/python benchmarks/data_attribution.py --part scale --sizes 50000 --device cuda

lint: install
	$(BIN)/ruff check lightning_xai tests benchmarks examples

# Reference tools compared against in benchmarks/ (not runtime dependencies).
bench-deps: install
	$(BIN)/pip install --quiet --no-deps torch-explain==1.5.1 lfxai==0.1.1 quantus==0.6.0 \
		pytorch-concepts==1.0.0a7 pandas==3.1.1 pytz==2026.6 traker==0.3.2 dattri==0.3.0

clean:
	rm -rf $(VENV) lightning_logs .pytest_cache
