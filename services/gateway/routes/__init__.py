"""The gateway's HTTP routes, one module per resource; `create_app` includes them all."""
