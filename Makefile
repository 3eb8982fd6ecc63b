# Everything a fresh machine needs: `make demo` runs the main job, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test demo bench ablation shipped clean

$(STAMP): requirements.txt requirements-train.txt edge_runtime/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	find training -name '*.nb[ic]' -delete  # numba's cached kernels name the modules they came from
	touch $(STAMP)

venv: $(STAMP)

test: venv
	$(PY) -m pytest -n 2 --dist loadfile --durations=15

# The demo's face model: $$SIAMFACE_FACE_MODEL, else ../shared/assets/ict-face-model; with neither,
# ICT-FaceKit (MIT) is cloned into runs/ and converted (the only download), or the demo stops saying how
# to get a face model. Then the shipped bundle (models/default) reconstructs the demo's photo too.
FACEKIT := runs/ICT-FaceKit
FACEKIT_ASSET := runs/face-model/ict_face_model.npz
HAS_FACE_MODEL := from siamface.training.face_model import resolve_face_model_path as r; r()
NO_FACE_MODEL := error: no face model: set SIAMFACE_FACE_MODEL to an ict_face_model.npz, or clone \
  https://github.com/ICT-VGL/ICT-FaceKit and run siamface data face-model DIR --out FILE (docs/face-model.md)
demo: venv
	@if ! $(PY) -c "$(HAS_FACE_MODEL)" 2>/dev/null; then \
	  if [ ! -f $(FACEKIT_ASSET) ]; then \
	    [ -d $(FACEKIT)/FaceXModel ] || git clone -q --depth 1 https://github.com/ICT-VGL/ICT-FaceKit $(FACEKIT) 2>/dev/null \
	      || { echo "$(NO_FACE_MODEL)" >&2; exit 2; }; \
	    $(VENV)/bin/siamface data face-model $(FACEKIT) --out $(FACEKIT_ASSET) || exit 2; \
	  fi; \
	  export SIAMFACE_FACE_MODEL=$(CURDIR)/$(FACEKIT_ASSET); \
	fi; \
	$(VENV)/bin/siamface demo
	@if [ -f models/default/bundle.json ]; then \
	  $(VENV)/bin/siamface reconstruct runs/demo/photos/astronaut.png --model models/default \
	    --out runs/demo/shipped --obj --overlay && echo "shipped model (models/default): runs/demo/shipped"; \
	else echo "no shipped bundle in models/default: the demo's own bundles are in runs/demo/bundles"; fi

bench: venv
	$(VENV)/bin/siamface data bench
	@if [ -d runs/demo/bundles ]; then \
	  $(VENV)/bin/siamface bench runs/demo/bundles/* --image runs/demo/photos/astronaut.png; \
	else echo "bundle latency: run make demo first (it writes runs/demo/bundles)"; fi

# Loss ablation on the demo's dataset: geometry only, + shape contrastive, + identity (the demo's config),
# the full config without the aligned shape loss, and with the trait regression (off by default). The full arm
# is the demo's float run (a link): after `make demo` it resumes finished, not retrained.
ABLATION := runs/ablation
TRAIN := $(VENV)/bin/siamface train --config configs/train-small.yaml data=[runs/demo/data]
ablation: venv
	$(VENV)/bin/siamface data synth --config configs/synth-small.yaml --out runs/demo/data
	mkdir -p $(ABLATION) runs/demo/train && ln -sfnT ../demo/train $(ABLATION)/full
	$(TRAIN) --out $(ABLATION)/full
	$(TRAIN) --out $(ABLATION)/geometry loss.shape_contrastive=0 loss.identity=none loss.classifier=none
	$(TRAIN) --out $(ABLATION)/shape loss.identity=none loss.classifier=none
	$(TRAIN) --out $(ABLATION)/no-shape-loss loss.shape=0
	$(TRAIN) --out $(ABLATION)/traits loss.traits=3
	$(VENV)/bin/siamface compare $(ABLATION)/geometry/best $(ABLATION)/shape/best $(ABLATION)/full/best \
	  $(ABLATION)/no-shape-loss/best $(ABLATION)/traits/best \
	  --data runs/demo/data --baseline --out $(ABLATION)/report

# The shipped bundle (models/default) from nothing: 50,000 synthetic people (about 10 min), the long
# config (configs/train-long.yaml; about 1.5 h on 2 cores), QAT and the int8-qat export, the texture
# identity network on that bundle's unwrapped faces of those people and 100,000 more (seeds 1 and 2;
# configs/texture-long.yaml; about 2 h), then its figures on the held-out people. Every stage
# resumes; copy runs/shipped/bundles/int8-qat-texture to models/default.
SHIPPED := runs/shipped
shipped: venv
	$(VENV)/bin/siamface data synth --config configs/synth-small.yaml --out $(SHIPPED)/data train_identities=50000
	$(VENV)/bin/siamface data synth --config configs/synth-small.yaml --out $(SHIPPED)/data2 train_identities=50000 \
	  val_identities=300 seed=1
	$(VENV)/bin/siamface data synth --config configs/synth-small.yaml --out $(SHIPPED)/data3 train_identities=50000 \
	  val_identities=300 seed=2
	$(VENV)/bin/siamface train --config configs/train-long.yaml data=[$(SHIPPED)/data] --out $(SHIPPED)/train
	$(VENV)/bin/siamface qat $(SHIPPED)/train/best --out $(SHIPPED)/qat
	test -f $(SHIPPED)/bundles/int8-qat/bundle.json || \
	  $(VENV)/bin/siamface export $(SHIPPED)/qat/best --variant int8-qat --out $(SHIPPED)/bundles
	$(VENV)/bin/siamface texture-id train --config configs/texture-long.yaml --out $(SHIPPED)/texture \
	  bundle=$(SHIPPED)/bundles/int8-qat data=[$(SHIPPED)/data,$(SHIPPED)/data2,$(SHIPPED)/data3]
	test -f $(SHIPPED)/bundles/int8-qat-texture/bundle.json || \
	  $(VENV)/bin/siamface texture-id attach $(SHIPPED)/texture --out $(SHIPPED)/bundles/int8-qat-texture
	$(VENV)/bin/siamface evaluate --model $(SHIPPED)/bundles/int8-qat-texture --data $(SHIPPED)/data --out $(SHIPPED)/evaluate

clean:
	rm -rf runs .pytest_cache
