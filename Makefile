# Everything builds from nothing: the first target that needs the virtual environment creates it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision first, pinned to the builds that lie on this machine's disk; the project's
# own ranges admit them, so the editable install below does not replace them.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/dpt --version
	@if $(BIN)/dpt depth --help >/dev/null 2>&1; then \
		$(BIN)/dpt depth samples -o out/demo; \
	else \
		echo "dpt depth is not there yet: it arrives with the pipeline issue."; \
	fi

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/bench_forward.py

clean:
	rm -rf $(VENV) out .pytest_cache
