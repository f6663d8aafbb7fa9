# Two commands: `make demo` (set up, then run the offline quickstart) and `make test` (CI runs it).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pofa-installed
RUN_DIR ?= runs/quickstart

.PHONY: setup demo test test-fast fuzz lint lock clean peers bench-distilbert catalogue

setup: $(STAMP)

# Reinstalls only when the dependency declarations change; constraints.txt pins every version.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[compress,demo,dev,serve]'
	touch $(STAMP)

demo: setup
	$(BIN)/pofa-openvino run recipes/quickstart.yaml -o $(RUN_DIR) --resume

# CI runs this: the linter, then every test.
test: lint
	$(BIN)/python -m pytest -q

# The edit loop: the linter and the tests not marked slow (no real training, export or quantization).
test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow"

# The property-based tests with many more cases than `make test` runs.
fuzz: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_recipe_fuzz.py --hypothesis-profile=fuzz

lint: setup
	$(BIN)/ruff check pofa_openvino tests

# Rewrite recipes/<model>-<task>.yaml from pofa_openvino/catalogue.py (a test keeps them in sync).
catalogue: setup
	$(BIN)/python -c "from pathlib import Path; from pofa_openvino.catalogue import write_catalogue; write_catalogue(Path('recipes'))"

# Peer engines for benchmarks/peers.py, in a throwaway venv: DeepSparse 1.8 pins an old onnx.
PEERS := benchmarks/.venv-peers
peers: $(PEERS)/.installed

$(PEERS)/.installed: pyproject.toml
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --disable-pip-version-check -e . deepsparse==1.8.0 \
		onnxruntime==1.32.0 openvino==2026.4.1 openvino-tokenizers==2026.4.1.0 numpy==1.26.4
	touch $@

# DistilBERT-base shape, 90% sparse: toolkit variants, then ONNX Runtime and DeepSparse (~20 min).
bench-distilbert: setup peers
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[compress,demo,dev,peers]'
	$(BIN)/python benchmarks/distilbert_base_sparse.py --peers-python $(PEERS)/bin/python

# Re-resolve the pins after changing pyproject.toml (needs the package index).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[compress,demo,dev,peers]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) runs .pytest_cache
