"""`python -m services.gateway`: serve the API with uvicorn on the configured host and port."""
from __future__ import annotations

import uvicorn

from services.gateway.app import create_app
from shared.observability import setup_logging
from shared.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    setup_logging("gateway", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.gateway_host, port=settings.gateway_port,
                log_config=None, access_log=False, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
