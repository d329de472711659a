"""queue: see docs/ARCHITECTURE.md."""
