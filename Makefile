# pgflow-sms developer tasks. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
DB_URL = $${DATABASE_URL:-$$(scripts/db.sh up)}

.PHONY: help venv db-up db-down migrate demo run test lint types pytest schema-snapshot migration sql-check release-migrations bench clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

venv: ## Create .venv with the pinned packages (requirements.lock)
	@scripts/bootstrap.sh

db-up: ## Start the local throwaway PostgreSQL + pg_cron (.pgflow/) and print its URL
	@scripts/db.sh up

db-down: ## Stop the local cluster
	@scripts/db.sh down

migrate: venv ## Apply pending migrations to DATABASE_URL (or the local cluster)
	@DATABASE_URL=$(DB_URL) $(BIN)/pgflow db migrate

demo: venv ## The whole story on local defaults: five leads, replies, STOP, outcomes (pgflow demo)
	@$(BIN)/pgflow demo $(DEMO_ARGS)

run: venv ## Database up, migrations applied, status
	@export DATABASE_URL=$(DB_URL); $(BIN)/pgflow db migrate && $(BIN)/pgflow status

lint: venv ## ruff
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

types: venv ## mypy (strict on pgflow/)
	@$(BIN)/mypy pgflow cli tests bench

pytest: venv ## The test suite against DATABASE_URL (or the local cluster)
	@DATABASE_URL=$(DB_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint types pytest ## Lint, types and every test

schema-snapshot: venv ## Rewrite sql/schema.sql from the migrations
	@DATABASE_URL=$(DB_URL) $(BIN)/python -m tests.snapshot

migration: venv ## Write the next migration from what changed in sql/functions/ (NAME=verb_object)
	@test -n "$(NAME)" || { echo "usage: make migration NAME=replace_tick" >&2; exit 2; }
	@DATABASE_URL=$(DB_URL) $(BIN)/python -m tests.sqlsource migration $(NAME)

sql-check: venv ## Show where sql/functions/ and the migrations differ
	@DATABASE_URL=$(DB_URL) $(BIN)/python -m tests.sqlsource check

release-migrations: venv ## Freeze the migrations: dump head as a release, pin new files
	@DATABASE_URL=$(DB_URL) $(BIN)/python -m tests.releases cut

clean: ## Remove caches (not the database)
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
