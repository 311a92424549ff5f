# The two commands of the README: `make up` (the site on this machine) and `make test` (everything).
.PHONY: bootstrap up down status test lint unit bench

bootstrap:
	@./scripts/bootstrap.sh

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy .

test: lint
	.venv/bin/python -m pytest -q

unit: bootstrap
	.venv/bin/python -m pytest -q tests/unit
