"""Artifacts: encryption (the only cryptography importer), the key, writing and reading."""
