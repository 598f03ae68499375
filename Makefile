# Everything a user needs: `make demo` and `make test`, each setting up .venv by itself.
# Override the torch requirement for a GPU machine, e.g. `make demo TORCH=torch==2.13.0+cu126`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
DEMO_DATA := data/bach-chorales
DEMO_RUN := runs/demo

.PHONY: venv dev demo test lint clean

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

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: venv
	$(BIN)/aurl prepare builtin:bach-chorales --out $(DEMO_DATA) --config configs/demo.yaml --workers 2
	$(BIN)/aurl train --config configs/demo.yaml --set data.dataset=$(DEMO_DATA) --run-dir $(DEMO_RUN) --overwrite
	$(BIN)/aurl generate --run $(DEMO_RUN) --num 4 --out $(DEMO_RUN)/samples/final --wav
	@echo "Demo done. Run directory: $(DEMO_RUN)  samples: $(DEMO_RUN)/samples/final"

test: dev
	$(BIN)/ruff check aurl tests benchmarks
	$(BIN)/python -m pytest

lint: dev
	$(BIN)/ruff check aurl tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
