"""The lowest layer: what a guarded lock's holder record says, and how it is read and judged."""
