"""Application layer: the product's use cases, free of web-framework types (the API routers, the worker
and the CLI call into it)."""
