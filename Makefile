# Everything a user needs: `make demo` and `make test`, each setting up .venv by itself.
# Override the torch requirement for a GPU machine, e.g. `make demo TORCH=torch==2.13.0+cu126`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
DEMO_DATA := data/bach-chorales
DEMO_RUN := runs/demo
# A wall-time budget (minutes) so that a slower 2-core CPU still finishes within 10 minutes: training stops
# at its steps or its minutes, whichever come first, the LR decaying over the nearer of the two.
DEMO_MINUTES ?= 3
# Its four free pieces are asked for 12 bars or more (--min-bars): left to itself the model now and then ends
# one sooner, as 45 of the 350 chorales do.
# The demo model harmonises the soprano of two held-out (valid split) chorales: the melody is forced at its
# onsets in the one time-ordered stream while the model writes alto, tenor and bass around it, at the settings
# a user gets for the task (generate.tasks: a little cooler than its free samples).
CHORALES = $${AURL_CACHE:-$$HOME/.cache/aurl}/bach-chorales
HARMONISE := bach_bwv307 bach_bwv426

.PHONY: venv dev demo serve test lint docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamps keep repeated `make` runs from reinstalling; they change when pyproject.toml does.
# tinysoundfont (the WAV synth) declares pyaudio, which only live playback needs and which needs the
# PortAudio headers to build: it is installed without its dependencies.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps "tinysoundfont>=0.3.7"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# The user guide's tools (MkDocs, mkdocs-material): the docs extra.
$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[docs]"
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: venv
	$(BIN)/aurl prepare builtin:bach-chorales --out $(DEMO_DATA) --config configs/demo.yaml --workers 2
	$(BIN)/aurl train --config configs/demo.yaml --set data.dataset=$(DEMO_DATA) --run-dir $(DEMO_RUN) --overwrite \
		--set train.max_minutes=$(DEMO_MINUTES)
	$(BIN)/aurl generate --run $(DEMO_RUN) --num 4 --min-bars 12 --out $(DEMO_RUN)/samples/final --wav
	for chorale in $(HARMONISE); do \
		$(BIN)/aurl generate --run $(DEMO_RUN) --accompany $(CHORALES)/$$chorale.mid --keep 0 --add 41 42 43 \
			--num 1 --out $(DEMO_RUN)/samples/final/harmonised_$$chorale --wav \
			|| exit 1; \
	done
	@echo "Demo done. Run directory: $(DEMO_RUN)  samples: $(DEMO_RUN)/samples/final" \
		"(harmonisations of two held-out chorale melodies in harmonised_*)"

# The studio on the demo's run: http://127.0.0.1:8000/ (PORT=... to change it).
PORT ?= 8000
serve: venv
	@test -f $(DEMO_RUN)/config.yaml || \
		{ echo "make serve: no trained run in $(DEMO_RUN); run make demo first" >&2; exit 2; }
	$(BIN)/aurl serve --run $(DEMO_RUN) --port $(PORT)

test: dev
	$(BIN)/ruff check aurl tests benchmarks
	$(BIN)/python -m pytest

lint: dev
	$(BIN)/ruff check aurl tests benchmarks

# The user guide (docs/, mkdocs.yml) as a static site in site/; --strict fails on a broken link, a missing
# page or a page left out of the nav.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build *.egg-info
