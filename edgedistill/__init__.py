"""edgedistill: distill an LLM's judgement on one task into a small, fast, device-ready model."""

__version__ = "0.1.0"
