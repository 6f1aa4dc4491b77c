"""Content units, closures, layering and the environment helpers."""
