"""`make mutation`'s summary: killed / total per module, from `mutmut results --all true` on stdin.

A timeout counts as killed (the mutant made the tests hang; pytest would fail them). Survivors
and mutants no test reaches are listed by name, each marked with whether tests/MUTATION.md
explains it. Exit status 1 when a module is under the bar (85% killed)."""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

BAR = 0.85
NOTES = Path(__file__).with_name("MUTATION.md")
LINE = re.compile(r"^\s*(?P<name>(?P<module>[\w.]+?)\.x[_ǁ]\S+__mutmut_\d+): (?P<status>.+)$")
CAUGHT = {"killed", "timeout", "caught by type check"}


def main() -> int:
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    open_ones: list[tuple[str, str]] = []
    for line in sys.stdin:
        match = LINE.match(line.rstrip("\n"))
        if not match:
            continue
        status = match["status"]
        by_module[match["module"]][status] += 1
        if status not in CAUGHT:
            open_ones.append((match["name"], status))
    if not by_module:
        print("no mutmut results (run `mutmut run` first)", file=sys.stderr)
        return 1
    print(f"{'module':34} {'killed':>7} {'total':>6} {'score':>7}  (timeouts, survived, no tests)")
    failing = []
    for module, counts in sorted(by_module.items()):
        total = sum(counts.values())
        killed = sum(counts[s] for s in CAUGHT)
        score = killed / total
        flag = "" if score >= BAR else "  UNDER 85%"
        failing += [module] if flag else []
        print(f"{module:34} {killed:7d} {total:6d} {score:7.1%}  ({counts['timeout']}, "
              f"{counts['survived']}, {counts['no tests']}){flag}")
    explained = NOTES.read_text() if NOTES.exists() else ""
    unexplained = [(n, s) for n, s in open_ones if f"`{n}`" not in explained]
    print(f"\n{len(open_ones)} not killed; {len(open_ones) - len(unexplained)} explained in "
          f"{NOTES.relative_to(Path.cwd()) if NOTES.is_relative_to(Path.cwd()) else NOTES}")
    for name, status in unexplained:
        print(f"  not in MUTATION.md: {name} ({status}); see `mutmut show {name}`")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
