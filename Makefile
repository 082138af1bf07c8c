# The two commands of the README, and the docs. Each installs what it needs first (idempotent).
.PHONY: app test docs setup setup-tests

app: setup  ## run the web app on the embedded defaults (SQLite store, default model)
	.venv/bin/python app.py

test: setup-tests  ## run the whole test suite (installs poppler, chromium and dev packages)
	.venv/bin/python -m pytest -q

docs: setup-tests  ## serve the documentation site (docs/, mkdocs.yml) on http://127.0.0.1:8000
	.venv/bin/python -m mkdocs serve

setup:
	./scripts/setup.sh

setup-tests:
	./scripts/setup-tests.sh
