"""Queue backends, one module per broker; ``sqlite`` is the embedded default."""
