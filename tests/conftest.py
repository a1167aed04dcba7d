"""Shared pytest configuration for the package tests."""


def pytest_configure(config):
    # Registered here rather than in pyproject.toml (editing that rebuilds the Makefile's venv).
    config.addinivalue_line(
        "markers",
        "browser: drives JupyterLab in headless Chromium (deselect with -m 'not browser')",
    )
