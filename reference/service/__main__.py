"""`python -m reference.service`: the reference service under uvicorn (HOST, PORT, ...)."""

from __future__ import annotations

import os

import uvicorn

from reference.config import Settings, load_settings_or_exit
from reference.service.app import create_app
from reference.service.configs import setup_logging


def serve(settings: Settings) -> None:
    """Run the service with `settings` until SIGTERM/SIGINT."""
    setup_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )


def main() -> None:
    """The entry point: settings from the environment (exits naming a bad variable), then serve."""
    serve(load_settings_or_exit(os.environ))


if __name__ == "__main__":
    main()
