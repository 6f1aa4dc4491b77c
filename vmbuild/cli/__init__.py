"""The command line: one module per command (or per family of commands).

Each module exposes ``register(subparsers)`` and sets ``func`` on the parsers it adds;
``vmbuild.__main__.COMMANDS`` says which module owns which command, and is the one
error boundary. This package's ``__init__`` imports nothing, so a command loads only
its own module.
"""
