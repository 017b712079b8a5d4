"""The web console's static assets (``static/``): plain ES modules, no build step, served at /console."""

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"

__all__ = ["STATIC_DIR"]
