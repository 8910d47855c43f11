# The README's two commands. Each bootstraps first (idempotent, seconds when done).
PY := .venv/bin/python
PYTEST_ARGS ?= -m "not nightly"

.PHONY: run test test-nightly bootstrap lint clean

bootstrap:
	@scripts/bootstrap

run: bootstrap
	@PATH="$(CURDIR)/.tools/bin:$$PATH" $(PY) -m scenarios.cli run --all --quick --jobs 2

# --docker: a Docker daemon for the run (started if none answers, stopped at the end) and
# the local images (built once); see scripts/docker-session and scripts/docker-daemon.
test:
	@scripts/bootstrap --test
	@PATH="$(CURDIR)/.tools/bin:$$PATH" scripts/bootstrap --docker -- $(PY) -m pytest --durations=60 $(PYTEST_ARGS)

# What a nightly CI job adds: the 30-example property searches, the replicated reference runs.
test-nightly:
	@$(MAKE) --no-print-directory test PYTEST_ARGS="-m nightly"

lint: bootstrap
	@.venv/bin/ruff check reference scenarios tests locustfiles
	@.venv/bin/ruff format --check reference scenarios tests locustfiles
	@.venv/bin/mypy reference scenarios tests locustfiles

clean:
	rm -rf .stormproof reports .pytest_cache .mypy_cache .ruff_cache
