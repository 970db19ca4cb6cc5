"""Size limits a reader can rely on: no production function over 80 lines and
no source file over 600 production lines (non-blank, non-comment lines outside
test modules)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_layering import SRC, files_of_test_modules

MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 600

# Phrase tables: one string per line, data rather than code.
DATA_TABLES = {"classify/lexicon.rs"}

INLINE_TESTS = re.compile(r"^\s*#\[cfg\(test\)\]\s*$")
INLINE_TEST_MODULE = re.compile(r"^\s*mod\s+\w+\s*\{")
FUNCTION = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:unsafe\s+)?fn\s+(\w+)")
# String and char literals, whose braces are not code.
LITERAL = re.compile(r"r(#*)\".*?\"\1|b?\"(?:\\.|[^\"\\])*\"|b?'(?:\\.|[^'\\])'")


def production_lines(file: Path) -> list[str]:
    """The file's lines up to its inline test module, if any."""
    lines = file.read_text().split("\n")
    for number, line in enumerate(lines[:-1]):
        if INLINE_TESTS.match(line) and INLINE_TEST_MODULE.match(lines[number + 1]):
            return lines[:number]
    return lines


def code_of(line: str) -> str:
    return LITERAL.sub('""', line).split("//")[0]


def functions(lines: list[str]) -> list[tuple[str, int, int]]:
    """(name, first line, length in lines) of every `fn` with a body."""
    found = []
    for start, line in enumerate(lines):
        match = FUNCTION.match(line)
        if not match:
            continue
        depth, opened = 0, False
        for end in range(start, len(lines)):
            code = code_of(lines[end])
            if not opened and code.rstrip().endswith(";"):
                break  # a declaration without a body
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                found.append((match.group(1), start + 1, end - start + 1))
                break
    return found


def measured() -> tuple[dict[str, int], dict[str, int]]:
    """Files over the file limit and functions over the function limit."""
    long_files: dict[str, int] = {}
    long_functions: dict[str, int] = {}
    skipped = files_of_test_modules()
    for file in sorted(SRC.rglob("*.rs")):
        if file in skipped:
            continue
        name = str(file.relative_to(SRC))
        lines = production_lines(file)
        counted = sum(1 for line in lines if line.strip() and not line.strip().startswith("//"))
        if counted > MAX_FILE_LINES and name not in DATA_TABLES:
            long_files[name] = counted
        for function, _, length in functions(lines):
            if length > MAX_FUNCTION_LINES:
                long_functions[f"{name}::{function}"] = length
    return long_files, long_functions


def test_the_measure_sees_a_function_and_ignores_braces_in_literals():
    lines = ["fn short() {", '    let text = "{{{";', "    let byte = b'{';", "}", "fn declared();", "pub(crate) fn two() {", "}"]
    assert functions(lines) == [("short", 1, 4), ("two", 6, 2)]


def test_no_function_or_file_over_the_limits():
    long_files, long_functions = measured()
    assert not long_files, f"over {MAX_FILE_LINES} production lines: {long_files}"
    assert not long_functions, f"over {MAX_FUNCTION_LINES} lines: {long_functions}"
