# Two commands do everything on a fresh machine with python3 (3.11-3.13) and pip:
#   make demo   # venv + pinned deps, demo data, train, export, generate
#   make test   # venv + pinned deps, the test suite
# Another interpreter: make PYTHON=python3.12 demo (a .venv made by another one is rebuilt).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYVER  := import sys; print("%d.%d" % sys.version_info[:2])
SUPPORTED_PY := 3.11 3.12 3.13# as requires-python in pyproject.toml
WANT_PY := $(shell $(PYTHON) -c '$(PYVER)' 2>/dev/null)
# the stamp names the interpreter's version: a venv installed for another one is not "done"
STAMP  := $(VENV)/.installed-py$(WANT_PY)
DEMO_DATA ?= data/demo
DEMO_RUN  ?= runs/demo
# make smoke: a seconds-long train -> export -> generate on small data, plus the fast tests
SMOKE_DATA ?= data/smoke-py$(WANT_PY)
SMOKE_RUN  ?= runs/smoke-py$(WANT_PY)
# what differs between Python versions: C extensions (media decoders, torch), pickling
# and checkpoint loading, entry-point plugins, the data pipeline (~1 min)
FAST_TESTS ?= tests/data/test_media.py tests/data/test_video_readers.py tests/data/test_video_timing.py \
	tests/data/test_pipeline.py tests/inference/test_sampling.py tests/checkpoints/test_safe_loading.py \
	tests/plugins/test_tmrope.py tests/model/test_every_slot_runs.py tests/test_registry.py
export OMP_NUM_THREADS ?= 2
export DS_ACCELERATOR ?= cpu

# make demo-speech: the spoken demo (real words in 4 espeak-ng voices): data, a codec trained
# on its speech, the shards re-encoded with it, train, export, eval; figures in runs/demo-speech
SPEECH_DATA  ?= data/demo-speech
SPEECH_CODES ?= data/demo-speech-codes
SPEECH_RUN   ?= runs/demo-speech
SPEECH_EVAL  := --asr pocketsphinx --closed-vocabulary --speaker resemblyzer --voices $(SPEECH_DATA)/heldout/voices.jsonl

.PHONY: venv install demo demo-speech test lint smoke mutation clean distclean

# A venv of $(PYTHON), rebuilt when it was made by another Python: reusing it would
# install into, and test, the wrong interpreter (a failed install by one, say).
venv:
	@if [ -z "$(WANT_PY)" ]; then \
		echo "'$(PYTHON)' does not run: install Python 3.11-3.13, or make PYTHON=/path/to/python3.12"; \
		exit 1; fi
	@if [ -z "$(filter $(WANT_PY),$(SUPPORTED_PY))" ]; then \
		echo "$(PYTHON) is Python $(WANT_PY); omnitrain needs one of $(SUPPORTED_PY):" \
			"make PYTHON=python3.12 $(or $(GOALS),$(MAKECMDGOALS))"; exit 1; fi
	@have=$$($(BIN)/python -c '$(PYVER)' 2>/dev/null || true); \
	if [ -e $(VENV) ] && [ "$$have" != "$(WANT_PY)" ]; then \
		if [ ! -f $(VENV)/pyvenv.cfg ]; then \
			echo "$(VENV) exists but is not a venv: move it away or make VENV=other"; exit 1; fi; \
		echo "$(VENV) was made by Python $${have:-(broken)}, $(PYTHON) is $(WANT_PY): rebuilding it"; \
		rm -rf $(VENV); fi
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)

# (re)install when the pins change or the venv is new
$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory venv GOALS='$(MAKECMDGOALS)'
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	$(BIN)/pip install --disable-pip-version-check -q --no-deps resemblyzer==0.1.4  # its weights only (eval)
	rm -f $(VENV)/.installed*
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/omnitrain data demo $(DEMO_DATA)
	$(BIN)/omnitrain train recipe=demo run_dir=$(DEMO_RUN)
	$(BIN)/omnitrain summary $(DEMO_RUN) --require-drop 0.5
	$(BIN)/omnitrain export $(DEMO_RUN)/checkpoints/last.ckpt $(DEMO_RUN)/bundle
	$(BIN)/omnitrain generate $(DEMO_RUN)/bundle --manifest $(DEMO_DATA)/heldout/manifest.jsonl \
		--speech-dir $(DEMO_RUN)/replies --min-accuracy 0.75

demo-speech: install
	rm -rf $(SPEECH_DATA) $(SPEECH_CODES) $(SPEECH_RUN)
	$(BIN)/omnitrain data demo $(SPEECH_DATA) --profile spoken
	$(BIN)/omnitrain train recipe=demo_speech_codec run_dir=$(SPEECH_RUN)/codec-run \
		'data.train_shards=$(SPEECH_DATA)/train-*.tar' 'data.val_shards=$(SPEECH_DATA)/val-*.tar'
	$(BIN)/omnitrain export $(SPEECH_RUN)/codec-run/checkpoints/last.ckpt $(SPEECH_RUN)/codec
	$(BIN)/omnitrain data resynth $(SPEECH_DATA)/heldout/truth.jsonl $(SPEECH_RUN)/resynth --codec $(SPEECH_RUN)/codec
	$(BIN)/omnitrain data encode $(SPEECH_DATA) $(SPEECH_CODES) --codec $(SPEECH_RUN)/codec recipe=demo_speech
	$(BIN)/omnitrain train recipe=demo_speech run_dir=$(SPEECH_RUN)/train codec.path=$(SPEECH_RUN)/codec \
		'data.train_shards=$(SPEECH_CODES)/train-*.tar' 'data.val_shards=$(SPEECH_CODES)/val-*.tar'
	$(BIN)/omnitrain export $(SPEECH_RUN)/train/checkpoints/last.ckpt $(SPEECH_RUN)/bundle
	$(BIN)/omnitrain eval --audio $(SPEECH_DATA)/heldout/truth.jsonl $(SPEECH_EVAL) --out $(SPEECH_RUN)/truth.json
	$(BIN)/omnitrain eval --audio $(SPEECH_RUN)/resynth/manifest.jsonl $(SPEECH_EVAL) --out $(SPEECH_RUN)/resynth.json
	$(BIN)/omnitrain eval $(SPEECH_RUN)/bundle --manifest $(SPEECH_DATA)/heldout/manifest.jsonl $(SPEECH_EVAL) \
		--out $(SPEECH_RUN)/eval.json
	$(BIN)/python scripts/demo_speech_report.py $(SPEECH_RUN)

test: install
	$(BIN)/python -m pytest -q --durations=25  # the 25 slowest: where suite time goes

lint: install
	$(BIN)/ruff check .

# plants mutants of the modules in scripts/mutation/targets.toml, each against its own tests
# (not in CI: about 20 min on 2 cores); docs/TESTING.md has the scores. MUTATION_ARGS="--only media"
mutation: install
	$(BIN)/python scripts/mutation/run.py $(MUTATION_ARGS)

# checks an install (CI runs it on every extra Python): no accuracy bar, the model is tiny
smoke: install
	rm -rf $(SMOKE_DATA) $(SMOKE_RUN)
	$(BIN)/omnitrain data demo $(SMOKE_DATA) --train 48 --val 12 --heldout 4 --per-shard 16
	$(BIN)/omnitrain train recipe=smoke run_dir=$(SMOKE_RUN) logger=csv \
		'data.train_shards=$(SMOKE_DATA)/train-*.tar' 'data.val_shards=$(SMOKE_DATA)/val-*.tar'
	$(BIN)/omnitrain export $(SMOKE_RUN)/checkpoints/last.ckpt $(SMOKE_RUN)/bundle
	$(BIN)/omnitrain generate $(SMOKE_RUN)/bundle --manifest $(SMOKE_DATA)/heldout/manifest.jsonl \
		--speech-dir $(SMOKE_RUN)/replies
	test -n "$$(ls $(SMOKE_RUN)/replies/*.wav)"
	$(BIN)/python -m pytest -q -p no:cacheprovider $(FAST_TESTS)

# the demo's and smoke checks' data and runs go; your own runs/* and the venvs stay
# (a reinstall downloads ~3 GB): make distclean removes the venvs too
clean:
	rm -rf $(DEMO_DATA) $(DEMO_RUN) data/smoke-py* runs/smoke-py* $(SPEECH_DATA) $(SPEECH_CODES) $(SPEECH_RUN)
	@echo "kept: $(VENV), .venv-py* (make distclean removes them) and any other runs/ folders"

distclean: clean
	rm -rf $(sort .venv $(VENV)) .venv-py* *.egg-info
