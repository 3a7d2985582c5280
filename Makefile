# The two commands a newcomer needs:
#   make run    installs into .venv and starts the app on its embedded defaults (SQLite, simulated SMS)
#   make test   installs everything (Python packages, Debian's Chromium when root) and runs the whole suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-dev browser lint

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt

browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

run: install
	$(BIN)/python -m webapp

test: install-dev browser
	$(BIN)/ruff check webapp tests bench
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check webapp tests bench
