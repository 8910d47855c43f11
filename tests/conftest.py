"""Shared fixtures of the whole suite, in one place.

The stack fixtures (`stormproof_stack`, ...) come from the `stormproof` pytest plugin
(scenarios/pytest_plugin.py, an entry point); the service rig (`service_factory`,
`service`) from tests/integration/service_support.py, registered here once instead of in
each test module. Fixtures are built only for the tests that ask for them.
"""

import os

pytest_plugins = ["tests.integration.service_support"]

# The suite's shared stack is local unless STORMPROOF_STACK says otherwise: with a Docker
# daemon up (the Docker tests start one), the provider's "auto" would pick docker. The
# Docker tests choose the docker provider themselves.
os.environ.setdefault("STORMPROOF_STACK", "local")
