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
	$(BIN)/pip install --quiet -e '.[test,fast,exr,video]'
	touch $@

install: $(VENV)/.installed

# Downloads Intel/dpt-large (1.3 GB) into the Hugging Face cache on first use. Where the hub is
# unreachable, dpt says so and how to pass a local folder instead: DEMO_MODEL=path/to/folder.
DEMO_MODEL ?= large

demo: install
	$(BIN)/dpt --version
	$(BIN)/dpt depth samples -o out/demo --model $(DEMO_MODEL) --format png16 --format side-by-side --overwrite

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/bench_forward.py
	$(BIN)/python bench/bench_families.py
	$(BIN)/python bench/bench_convert.py
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_encode.py
	$(BIN)/python bench/bench_precision.py
	$(BIN)/python bench/bench_scale.py
	$(BIN)/python bench/bench_pipeline.py --host-only
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_video.py

clean:
	rm -rf $(VENV) out .pytest_cache
