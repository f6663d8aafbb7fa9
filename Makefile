# Two commands: `make demo` (set up, then run the offline quickstart) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pofa-installed
RUN_DIR ?= runs/quickstart

.PHONY: setup demo test lint lock clean

setup: $(STAMP)

# Reinstalls only when the dependency declarations change; constraints.txt pins every version.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[compress,demo,dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/pofa-openvino run recipes/quickstart.yaml -o $(RUN_DIR) --resume

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check pofa_openvino tests

# Re-resolve the pins after changing pyproject.toml (needs the package index).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[compress,demo,dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) runs .pytest_cache
