"""admin: see docs/ARCHITECTURE.md."""
