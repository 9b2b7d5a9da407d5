"""Implementations of the application's ports: storage, Redis, crypto, mail, keys."""
