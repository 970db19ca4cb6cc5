"""Writes the figures of the latest campaign (fuzz/logs/<target>.log) into the
table between the figures markers of docs/fuzzing.md: executions, exec/s,
corpus size, crashes. python3 fuzz/record.py [target...] (the named targets
are updated; the other rows are kept)."""

from __future__ import annotations

import datetime
import pathlib
import re
import sys

FUZZ = pathlib.Path(__file__).resolve().parent
DOC = FUZZ.parent / "docs" / "fuzzing.md"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"
HEADER = [
    "| target | executions | exec/s | corpus (files) | crashes | logged (UTC) |",
    "|---|---:|---:|---:|---|---|",
]


def targets() -> list[str]:
    names = re.findall(r'^name = "(.*)"', (FUZZ / "Cargo.toml").read_text(), re.M)
    return names[1:]


def figures(target: str) -> str | None:
    log = FUZZ / "logs" / f"{target}.log"
    if not log.exists():
        return None
    text = log.read_text(errors="replace")
    executed = re.search(r"stat::number_of_executed_units:\s+(\d+)", text)
    rate = re.search(r"stat::average_exec_per_sec:\s+(\d+)", text)
    artifacts = re.findall(r"Test unit written to (\S+)", text)
    suffix = ""
    if executed is None:
        # A crash ends the run before the final stats, and a running target
        # has none yet: take the last status line.
        progress = re.findall(r"^#(\d+)\s.*?exec/s: (\d+)", text, re.M)
        executed, rate = progress[-1] if progress else ("?", "?")
        suffix = "" if artifacts else " so far (running)"
    else:
        executed, rate = executed.group(1), rate.group(1) if rate else "?"
    corpus = len(list((FUZZ / "corpus" / target).iterdir())) if (FUZZ / "corpus" / target).exists() else 0
    crashes = ", ".join(f"`{pathlib.Path(a).name}`" for a in artifacts) or "none"
    finished = datetime.datetime.fromtimestamp(log.stat().st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    executed = (f"{int(executed):,}" if str(executed).isdigit() else executed) + suffix
    return f"| `{target}` | {executed} | {rate} | {corpus} | {crashes} | {finished} |"


def main(updated: list[str]) -> None:
    doc = DOC.read_text()
    head, _, rest = doc.partition(BEGIN)
    old_table, _, tail = rest.partition(END)
    rows = {
        match.group(1): line
        for line in old_table.splitlines()
        if (match := re.match(r"\| `([a-z_]+)` \|", line))
    }
    for target in updated or targets():
        row = figures(target)
        if row:
            rows[target] = row
    table = HEADER + [rows.get(t, f"| `{t}` | not run yet | | | | |") for t in targets()]
    DOC.write_text(head + BEGIN + "\n" + "\n".join(table) + "\n" + END + tail)


if __name__ == "__main__":
    main(sys.argv[1:])
