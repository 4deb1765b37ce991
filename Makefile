# Every target creates .venv (with the pinned versions of constraints.txt) if it is missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test bench lint install clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[harness,dev,trackers]"
	@# our modules' bytecode once, not compiled again by each run where PYTHONDONTWRITEBYTECODE is set
	$(BIN)/python -m compileall -q mlp_core experiments
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python experiments/demo.py

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python experiments/bench.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) outputs
