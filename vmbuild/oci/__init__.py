"""Image model, deterministic layer tars, compression and archive formats."""
