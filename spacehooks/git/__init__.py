"""git: see docs/ARCHITECTURE.md."""
