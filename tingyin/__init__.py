"""tingyin (听音): a self-hosted audio-AI server wire-compatible with cloud vendors' APIs."""

__version__ = "0.1.0"
