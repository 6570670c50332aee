# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each creates .venv from constraints.txt on first use and reuses it afterwards.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=

.PHONY: demo test test-fast install images constraints device-wheels clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[train,preprocess,k8s,dev,onnx,litert,torch]'
	touch $@

# synth -> preprocess (Beam) -> train (tiny preset, every local device) -> export -> translate -> evaluate
demo: install
	$(BIN)/cyclegan demo $(DEMO_DIR)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick loop: everything but the tests marked slow (pytest.ini says what that means).
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Both container images with podman, on a local Debian base built once per machine (k8s/images.sh says how).
images:
	k8s/images.sh

# Re-pin after changing a dependency: resolves setup.py afresh in a scratch venv.
constraints:
	rm -rf /tmp/cyclegan-pin && $(PYTHON) -m venv /tmp/cyclegan-pin
	/tmp/cyclegan-pin/bin/pip install --quiet '.[dev,k8s,onnx,litert,torch]'
	{ echo "# Versions tested together (Python 3.11, Linux x86_64). Regenerate with: make constraints"; \
	  /tmp/cyclegan-pin/bin/pip freeze --exclude cyclegan-pipeline; } > constraints.txt

# Keras and the two packages it needs that a GPU machine with JAX but no TensorFlow lacks (Python 3.12, x86-64),
# for benchmarks/gpu_run.sh there.
device-wheels: install
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .device_wheels \
	    $$(grep -E '^(keras|namex|optree)==' constraints.txt)

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info
