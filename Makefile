# The README's two commands: `make up` (the whole site on this machine) and `make test` (everything).
.PHONY: bootstrap up down status test lint bench

bootstrap:
	@./scripts/bootstrap.sh

up: bootstrap
	@.venv/bin/python -m local up

down:
	@if [ -x .venv/bin/python ]; then .venv/bin/python -m local down; else echo "nothing was running"; fi

status:
	@.venv/bin/python -m local status

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy .
	.venv/bin/python scripts/readme.py --check

test: lint
	.venv/bin/python -m pytest -q

bench: bootstrap
	.venv/bin/python bench/deploy_time.py
	.venv/bin/python bench/loop_cost.py
	.venv/bin/python bench/serve.py
