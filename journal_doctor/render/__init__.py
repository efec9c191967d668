"""Output formats: one module each (table for people, JSON for scripts)."""
