"""Replace one generated section of benchmarks/README.md (between its begin / end markers)."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def replace_section(text: str, begin: str, end: str) -> None:
    """Put ``text`` (which starts with ``begin`` and ends with ``end``) in place of the old section,
    or append it when the README has none."""
    path = os.path.join(HERE, "README.md")
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if begin in old and end in old:
        new = old[:old.index(begin)] + text + old[old.index(end) + len(end) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(new)
