"""The HTTP layer: routes, request/response schemas, dependencies, error mapping."""
