"""A census of a process's descendants from /proc (tests that check nothing is left behind)."""

from __future__ import annotations

from pathlib import Path


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (children, grandchildren, ...), read off /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def interruptible() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: restore the default disposition, which a
    test run started in the background (``cmd &``, ``nohup``) inherits as "ignored" and would pass on."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
