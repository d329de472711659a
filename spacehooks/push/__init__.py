"""push: see docs/ARCHITECTURE.md."""
