# Two commands do all the set-up: `make run` and `make test`.
# Both create .venv when missing and install into it: CPU torch first (from the local wheel; a
# plain `torch` requirement would pull a multi-GB CUDA build), then the project with its test
# extras. The stamp file makes a second call with nothing changed spend no time on setup.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.psyqa-installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: run test install browser ingest clean-data bench

# --heal: a damaged index is reported in one line and rebuilt from corpus/ (the damaged store is
# moved to data/index/damaged/, kept).
run: install
	@$(BIN)/psyqa ingest --heal || echo "psyqa: indexing did not complete (see above); starting the app on the index as it is"
	@$(BIN)/psyqa app

test: install browser
	$(BIN)/python -m pytest

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# Browser tests drive Debian's Chromium through Playwright (no browser download).
browser:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| sudo sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'; }

ingest: install
	$(BIN)/psyqa ingest

bench: install
	$(BIN)/psyqa bench latency

# Removes the derived index data only (data/index/, benchmark caches); feedback and saved
# conversations in data/user/ are kept. `psyqa clean` honours PSYQA_DATA_DIR.
clean-data: install
	@$(BIN)/psyqa clean
