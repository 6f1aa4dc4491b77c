"""Finding live QEMU processes, to check that a test left none behind."""

from __future__ import annotations

from pathlib import Path


def qemu_mentioning(text: str) -> list[int]:
    """PIDs of live QEMU processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"qemu-system" in cmdline and text.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found
