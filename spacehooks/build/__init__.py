"""build: see docs/ARCHITECTURE.md."""
