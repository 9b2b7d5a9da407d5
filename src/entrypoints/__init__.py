"""Litestar app, controllers, DTOs, guards, middleware, CLI and the one composition root."""
