# Two commands do everything on a fresh machine with python3 and pip:
#   make demo   # venv + pinned deps, demo data, train, export, generate
#   make test   # venv + pinned deps, the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DATA ?= data/demo
DEMO_RUN  ?= runs/demo
export OMP_NUM_THREADS ?= 2
export DS_ACCELERATOR ?= cpu

.PHONY: install demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# reinstall only when the dependency pins change
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/omnitrain data demo $(DEMO_DATA)
	$(BIN)/omnitrain train recipe=demo run_dir=$(DEMO_RUN)
	$(BIN)/omnitrain summary $(DEMO_RUN) --require-drop 0.5
	$(BIN)/omnitrain export $(DEMO_RUN)/checkpoints/last.ckpt $(DEMO_RUN)/bundle
	$(BIN)/omnitrain generate $(DEMO_RUN)/bundle --manifest $(DEMO_DATA)/heldout/manifest.jsonl \
		--speech-dir $(DEMO_RUN)/replies --min-accuracy 0.75

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(DEMO_DATA) runs
