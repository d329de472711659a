"""access: see docs/ARCHITECTURE.md."""
