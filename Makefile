# The two commands of the README. Both install what they need first (idempotent).
.PHONY: app test setup setup-tests

app: setup  ## run the web app on the embedded defaults (SQLite store, default model)
	.venv/bin/python app.py

test: setup-tests  ## run the whole test suite (installs poppler, chromium and dev packages)
	.venv/bin/python -m pytest -q

setup:
	./scripts/setup.sh

setup-tests:
	./scripts/setup-tests.sh
