#!/usr/bin/env python3
"""Builds Signalbox's routing training and validation data from public sets.

Reads each source from a git snapshot (a bare git directory, read with
`git show`), writes labelled JSONL, one prompt a line:

    {"id": ..., "type": "chat|math|knowledge", "source": ..., "prompt": ..., "weak": w, "strong": s}

`weak` and `strong` are how well a weak and a strong model do on the prompt,
in [0, 1] (see SOURCES.md for what each source's numbers are). Every item goes
to `train`, `dev` or `val` by a hash of its id, so the split is stable across
runs and machines; an evaluation-only set is written whole to `val`. Nothing
here is a held-out routing benchmark: no MT-Bench question, no GSM8K or MMLU
*test* item, no RouteLLM evaluation file.

    python3 tools/routing-data/build.py --mirror /work/.mirror --out tools/routing-data/out

Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

# Weights are learned on train; dev decides what the trainer keeps (and its
# settings); val is only for the final report.
VALIDATION_SHARE = 0.25
DEV_SHARE = 0.15

ALPACA_EVAL = "tatsu-lab+alpaca_eval"
GSM8K = "openai+grade-school-math"
ARC = "pangr2+dataset_collection"
MMLU = "hendrycks+test"
ARENA = "lmarena+arena-hard-auto"
MMLU_PRO = "TIGER-AI-Lab+MMLU-Pro"

# AlpacaEval 2 judgements (weighted GPT-4-turbo annotator) of answers from
# 7-13B open models (weak) and Claude models (strong), each against the same
# GPT-4-turbo reference answer.
WEAK_CHAT_MODELS = ["gemma-7b-it", "vicuna-13b-v1.5", "vicuna-7b-v1.5"]
STRONG_CHAT_MODELS = ["claude-2", "claude-2.1", "claude"]

# Arena-Bench-V1 (the forerunner of Arena-Hard): 300 Chatbot Arena prompts,
# each model's answer scored 1-10 by GPT-4 against a GPT-4 reference answer.
# Later commits removed the folder, so it is read at the last commit that has
# every model's judgement. Weak: the cheap-tier models of the day; strong: GPT-4.
ARENA_COMMIT = "4a705dd6963f777aba2ae79259e3013934e6e012"
WEAK_ARENA_MODELS = ["Mixtral-8x7B-Instruct-v0.1", "Llama-2-70b-chat", "gpt-3.5-turbo"]
STRONG_ARENA_MODELS = ["gpt-4-turbo", "gpt-4-0314"]

# The commit of hendrycks/test that added the validation split (the dev
# split is in the same tree). The test split is never read.
MMLU_VAL_COMMIT = "8d4768d45e7bda4ce86f3de4073603b508bf80e8"

# MMLU-Pro's published per-question answers of each model it evaluated
# (5-shot chain of thought, zipped JSON). Only the questions MMLU-Pro took
# from STEM websites, TheoremQA and SciBench are read: those it took from
# MMLU come from MMLU's test split. Weak: 7-8B chat models; strong: two of
# the strongest models whose answer files the snapshot holds.
MMLU_PRO_COMMIT = "f418b116db00b065c2aea046518d8fcf74d39872"
WEAK_PRO_MODELS = ["Mistral-7B-Instruct-v0.2", "Qwen1.5-7B-Chat", "Meta-Llama-3_1-8B-Instruct"]
STRONG_PRO_MODELS = ["gemini-1.5-pro-002", "Meta-Llama-3_1-70B-Instruct"]


def git_show(mirror: Path, repo: str, path: str, commit: str = "HEAD") -> str:
    return git_show_bytes(mirror, repo, path, commit).decode()


def git_show_bytes(mirror: Path, repo: str, path: str, commit: str = "HEAD") -> bytes:
    git_dir = mirror / repo / "repo"
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"],
        check=True, capture_output=True,
    ).stdout


def git_list(mirror: Path, repo: str, folder: str, commit: str = "HEAD") -> list[str]:
    git_dir = mirror / repo / "repo"
    listing = subprocess.run(
        ["git", "--git-dir", str(git_dir), "ls-tree", "--name-only", f"{commit}:{folder}"],
        check=True, capture_output=True, text=True,
    ).stdout
    return [f"{folder}/{name}" for name in listing.split()]


def split_of(item_id: str) -> str:
    digest = hashlib.sha256(item_id.encode()).digest()
    if digest[0] < 256 * VALIDATION_SHARE:
        return "val"
    return "dev" if digest[1] < 256 * DEV_SHARE / (1 - VALIDATION_SHARE) else "train"


def chat_items(mirror: Path):
    """AlpacaEval's 805 instructions; scores are each side's mean preference over the reference."""
    def preferences(model: str) -> dict[str, float]:
        path = f"results/{model}/weighted_alpaca_eval_gpt4_turbo/annotations.json"
        rows = json.loads(git_show(mirror, ALPACA_EVAL, path))
        # `preference` is 1 + P(the model's answer beats the reference).
        return {row["instruction"]: row["preference"] - 1.0 for row in rows if row["preference"] is not None}

    weak = [preferences(model) for model in WEAK_CHAT_MODELS]
    strong = [preferences(model) for model in STRONG_CHAT_MODELS]
    shared = set.intersection(*(set(table) for table in weak + strong))
    for instruction in sorted(shared):
        yield {
            "id": "alpaca_eval:" + hashlib.sha256(instruction.encode()).hexdigest()[:16],
            "type": "chat",
            "source": "alpaca_eval",
            "prompt": instruction,
            "weak": round(sum(table[instruction] for table in weak) / len(weak), 4),
            "strong": round(sum(table[instruction] for table in strong) / len(strong), 4),
        }


def arena_items(mirror: Path):
    """Arena-Bench-V1's prompts; scores are each side's mean GPT-4 rating (1-10) over 10."""
    folder = "data/arena-bench-v1"

    def ratings(model: str) -> dict[str, float]:
        text = git_show(mirror, ARENA, f"{folder}/model_judgment/{model}.jsonl", ARENA_COMMIT)
        rows = (json.loads(line) for line in text.splitlines())
        # A judgement the judge did not end with a rating has no score (or -1).
        return {row["question_id"]: row["score"] / 10 for row in rows if (row["score"] or 0) >= 1}

    weak = [ratings(model) for model in WEAK_ARENA_MODELS]
    strong = [ratings(model) for model in STRONG_ARENA_MODELS]
    for line in git_show(mirror, ARENA, f"{folder}/question.jsonl", ARENA_COMMIT).splitlines():
        question = json.loads(line)
        key = question["question_id"]
        if not all(key in table for table in weak + strong):
            continue
        yield {
            "id": f"arena_bench_v1:{key}",
            "type": "chat",
            "source": "arena_bench_v1",
            "prompt": question["turns"][0],
            "weak": round(sum(table[key] for table in weak) / len(weak), 4),
            "strong": round(sum(table[key] for table in strong) / len(strong), 4),
        }


def reference_steps(answer: str) -> int:
    """Calculation steps of a GSM8K reference solution: its calculator annotations, else its lines."""
    calls = len(re.findall(r"<<[^>]*>>", answer))
    lines = len([line for line in answer.split("####")[0].splitlines() if line.strip()])
    return calls or lines


def math_items(mirror: Path):
    """GSM8K *train* problems; the weak model's expected score falls with the steps the solution takes."""
    text = git_show(mirror, GSM8K, "grade_school_math/data/train.jsonl")
    for number, line in enumerate(text.splitlines()):
        row = json.loads(line)
        steps = reference_steps(row["answer"])
        yield {
            "id": f"gsm8k_train:{number}",
            "type": "math",
            "source": "gsm8k_train",
            "prompt": row["question"],
            "weak": max(0.0, min(1.0, 1.25 - 0.25 * steps)),
            "strong": 1.0,
            "steps": steps,
        }


def multiple_choice(question: str, options: list[str]) -> str:
    letters = "ABCDEFGHIJ"
    lines = [question.strip()] + [f"{letters[i]}. {option.strip()}" for i, option in enumerate(options)]
    return "\n".join(lines)


def arc_items(mirror: Path):
    """ARC train and dev: the Challenge set holds the questions a retrieval and a co-occurrence solver both got wrong."""
    base = "ARC-V1-Feb2018/ARC-V1-Feb2018-2"
    for part, weak in (("Challenge", 0.0), ("Easy", 1.0)):
        for split in ("Train", "Dev"):
            text = git_show(mirror, ARC, f"{base}/ARC-{part}/ARC-{part}-{split}.jsonl")
            for line in text.splitlines():
                row = json.loads(line)
                question = row["question"]
                options = [choice["text"] for choice in question["choices"]]
                yield {
                    "id": f"arc:{row['id']}",
                    "type": "knowledge",
                    "source": "arc",
                    "prompt": multiple_choice(question["stem"], options),
                    "weak": weak,
                    "strong": 1.0,
                }


def mmlu_level(subject: str) -> float:
    """Weak-model score by the school level the subject's name gives (a proxy, see SOURCES.md)."""
    for prefix, weak in (("elementary_", 1.0), ("high_school_", 0.75), ("college_", 0.25), ("professional_", 0.0)):
        if subject.startswith(prefix):
            return weak
    return 0.5


def mmlu_items(mirror: Path):
    """MMLU dev and validation questions (never the test split)."""
    for split in ("dev", "val"):
        for path in git_list(mirror, MMLU, f"data/{split}", MMLU_VAL_COMMIT):
            subject = Path(path).name.rsplit("_", 1)[0]
            rows = csv.reader(io.StringIO(git_show(mirror, MMLU, path, MMLU_VAL_COMMIT)))
            for number, row in enumerate(rows):
                if len(row) != 6:
                    continue
                yield {
                    "id": f"mmlu_{split}:{subject}:{number}",
                    "type": "knowledge",
                    "source": "mmlu_dev_val",
                    "prompt": multiple_choice(row[0], row[1:5]),
                    "weak": mmlu_level(subject),
                    "strong": 1.0,
                    "subject": subject,
                }


def mmlu_pro_items(mirror: Path):
    """MMLU-Pro's questions not taken from MMLU; scores are each side's share of models answering right."""
    def answers(model: str) -> dict[str, dict]:
        path = f"eval_results/model_outputs_{model}_5shots.zip"
        archive = zipfile.ZipFile(io.BytesIO(git_show_bytes(mirror, MMLU_PRO, path, MMLU_PRO_COMMIT)))
        rows = json.loads(archive.read(archive.namelist()[0]))
        return {str(row["question_id"]): row for row in rows if not row["src"].startswith("ori_mmlu")}

    weak = [answers(model) for model in WEAK_PRO_MODELS]
    strong = [answers(model) for model in STRONG_PRO_MODELS]
    shared = set.intersection(*(set(table) for table in weak + strong))

    def right(tables: list[dict[str, dict]], key: str) -> float:
        return round(sum(table[key]["pred"] == table[key]["answer"] for table in tables) / len(tables), 4)

    for key in sorted(shared, key=int):
        row = strong[0][key]
        options = row["options"]
        if isinstance(options, str):
            options = ast.literal_eval(options)
        yield {
            "id": f"mmlu_pro:{key}",
            "type": "knowledge",
            "source": "mmlu_pro",
            "prompt": multiple_choice(row["question"], options),
            "weak": right(weak, key),
            "strong": right(strong, key),
            "origin": row["src"].split("-")[0],
            # MMLU-Pro's subject (business, psychology, physics...): results by category.
            "category": row.get("category", ""),
        }


SETS = {
    "chat": chat_items,
    "math": math_items,
    "knowledge_arc": arc_items,
    "knowledge_mmlu": mmlu_items,
    "knowledge_pro": mmlu_pro_items,
}

# Sets never learned from or used to choose settings: each is written whole as
# its `val` file, a check on prompts and labels unlike the training ones.
EVALUATION_ONLY = {
    "chat_arena": arena_items,
}


def write_split(out: Path, name: str, items, split_of_id) -> None:
    files: dict[str, io.TextIOWrapper] = {}
    counts = {"train": 0, "dev": 0, "val": 0}
    for item in items:
        split = split_of_id(item["id"])
        if split not in files:
            files[split] = (out / f"{name}.{split}.jsonl").open("w")
        files[split].write(json.dumps(item, ensure_ascii=False) + "\n")
        counts[split] += 1
    for file in files.values():
        file.close()
    print(f"{name}: {counts['train']} train, {counts['dev']} dev, {counts['val']} val")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror"), help="folder of fetched git snapshots")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, items in SETS.items():
        write_split(args.out, name, items(args.mirror), split_of)
    for name, items in EVALUATION_ONLY.items():
        write_split(args.out, name, items(args.mirror), lambda _: "val")
    return 0


if __name__ == "__main__":
    sys.exit(main())
