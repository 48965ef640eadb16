"""The recorded environment: capture at start, describe, recreate as a venv or conda env."""
