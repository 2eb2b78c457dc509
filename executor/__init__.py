"""oneroof: verification suite and gated executor for the One-Roof governance release."""

__version__ = "0.1.0"
