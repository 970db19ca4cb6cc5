"""False and true semantic-cache hits of the mock bag-of-words embedder on the labelled pairs.

    .venv/bin/python tools/semantic_thresholds.py [tests/data/paraphrases.jsonl]

For each pair the cosine of the two texts as the OpenAI mock embeds them for a `bow-` model;
for each threshold, the share of different-answer pairs that would hit (false hits) and of
same-answer pairs that would (true hits). Says how a threshold behaves on this crude
embedder and these pairs only: a real embedding model spreads scores differently, and
Signalbox compares i8-quantised vectors (within 0.01 of these cosines).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.mocks.replies import bag_of_words_vector  # noqa: E402

PAIRS = Path(__file__).resolve().parent.parent / "tests/data/paraphrases.jsonl"
THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def scored(path: Path) -> list[tuple[float, bool, str, str]]:
    pairs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        (cosine(bag_of_words_vector(p["a"]), bag_of_words_vector(p["b"])), p["same"], p["a"], p["b"])
        for p in pairs
    ]


def main() -> None:
    rows = scored(Path(sys.argv[1]) if len(sys.argv) > 1 else PAIRS)
    same = [score for score, label, _, _ in rows if label]
    different = [score for score, label, _, _ in rows if not label]
    print(f"{len(rows)} pairs: {len(same)} same answer, {len(different)} different")
    print("threshold  false hits (of different)  true hits (of same)")
    for threshold in THRESHOLDS:
        false_hits = sum(score >= threshold for score in different)
        true_hits = sum(score >= threshold for score in same)
        print(f"{threshold:9.2f}  {false_hits:3d} ({false_hits / len(different):5.1%})"
              f"              {true_hits:3d} ({true_hits / len(same):5.1%})")
    print("\nmost similar different-answer pairs:")
    for score, _, a, b in sorted((r for r in rows if not r[1]), reverse=True)[:8]:
        print(f"  {score:.3f}  {a!r} / {b!r}")


if __name__ == "__main__":
    main()
