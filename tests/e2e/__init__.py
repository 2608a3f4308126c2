"""End-to-end tests (a package so that its conftest does not shadow tests/runners/conftest.py)."""
