# The README's two commands: `make up` (the whole site on this machine) and `make test` (everything).
.PHONY: bootstrap up down status scale roll test lint bench failover boot

bootstrap:
	@./scripts/bootstrap.sh

up: bootstrap
	@.venv/bin/python -m local up

down:
	@if [ -x .venv/bin/python ]; then .venv/bin/python -m local down; else echo "nothing was running"; fi

status:
	@.venv/bin/python -m local status

# make scale TIER=web N=3: start or stop servers so the tier has N (1..20); make roll TIER=app: replace each.
scale:
	@test -n "$(TIER)" -a -n "$(N)" || { echo "make scale: set TIER (web or app) and N, e.g. make scale TIER=web N=3" >&2; exit 2; }
	@.venv/bin/python -m local scale "$(TIER)" "$(N)"

roll:
	@test -n "$(TIER)" || { echo "make roll: set TIER (web or app), e.g. make roll TIER=app" >&2; exit 2; }
	@.venv/bin/python -m local roll "$(TIER)"

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy .
	.venv/bin/python scripts/readme.py --check

test: lint
	.venv/bin/python -m pytest -q

# Every bench, then one table of every figure with its target: make bench [STRICT=1] [SERVE='--duration 5'].
bench: bootstrap
	.venv/bin/python bench/run.py $(if $(STRICT),--strict) $(if $(SERVE),-- $(SERVE))

# The load-balancer pair in network namespaces (root): kill the MASTER's HAProxy, then the whole MASTER.
failover: bootstrap
	@.venv/bin/python -m local.pair demo

# One role (or several) booted from its real user-data in a container, AWS stood in (root):
# make boot ROLE=web, then look inside with the nsenter command it prints; Ctrl-C stops it.
boot: bootstrap
	@test -n "$(ROLE)" || { echo "make boot: set ROLE (lb, web, app, or several: ROLE='lb web app')" >&2; exit 2; }
	@.venv/bin/python -m local.boot $(ROLE)
