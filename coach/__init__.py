"""The application's own operator tools: the `coach` CLI, its HTTP client, the embedded stack,
dead-letter and topic inspection, and the watchdog process. Services never import this package."""
