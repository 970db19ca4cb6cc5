"""The routing data builder's MMLU-Pro reader, on a small snapshot written here:
questions MMLU-Pro took from MMLU (its test split, held out) never reach the
output, and the labels are each tier's share of right answers."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parent.parent / "tools" / "routing-data" / "build.py"


def load_builder():
    spec = importlib.util.spec_from_file_location("routing_data_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(question_id: int, src: str, pred: str, answer: str = "B", options=None) -> dict:
    return {
        "question_id": question_id,
        "question": f"Question {question_id}?",
        "options": options if options is not None else ["1 m", "2 m", "3 m"],
        "answer": answer,
        "src": src,
        "pred": pred,
        "category": "physics",
    }


def write_snapshot(mirror: Path, builder, answers: dict[str, list[dict]]) -> str:
    """A git snapshot laid out like MMLU-Pro's: one zipped JSON of answers per model."""
    work = mirror / "work"
    folder = work / "eval_results"
    folder.mkdir(parents=True)
    for model, rows in answers.items():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"model_outputs_{model}_5shots.json", json.dumps(rows))
        (folder / f"model_outputs_{model}_5shots.zip").write_bytes(buffer.getvalue())
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "answers"], check=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    repo = mirror / builder.MMLU_PRO
    repo.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repo / "repo")], check=True)
    return commit


def test_mmlu_pro_skips_mmlu_questions_and_labels_by_share_right(tmp_path, monkeypatch):
    builder = load_builder()
    weak, strong = builder.WEAK_PRO_MODELS, builder.STRONG_PRO_MODELS
    # Question 1: only the first weak model and every strong one answer right.
    # Question 2 is MMLU's (held out). Question 3: options as MMLU-Pro's string form.
    answers = {}
    for index, model in enumerate(weak + strong):
        right = model in strong or index == 0
        answers[model] = [
            row(1, "stemez-Physics", "B" if right else "C"),
            row(2, "ori_mmlu-high_school_physics", "B"),
            row(3, "theoremQA-Math", None, options="['4', '5']"),
        ]
    # A question one model has no answer for is left out.
    answers[strong[0]].append(row(4, "scibench-chem", "B"))
    commit = write_snapshot(tmp_path, builder, answers)
    monkeypatch.setattr(builder, "MMLU_PRO_COMMIT", commit)

    items = {item["id"]: item for item in builder.mmlu_pro_items(tmp_path)}

    assert sorted(items) == ["mmlu_pro:1", "mmlu_pro:3"]
    first = items["mmlu_pro:1"]
    assert first["weak"] == pytest.approx(1 / len(weak), abs=1e-4) and first["strong"] == 1.0
    assert first["prompt"] == "Question 1?\nA. 1 m\nB. 2 m\nC. 3 m"
    assert (first["type"], first["source"], first["origin"]) == ("knowledge", "mmlu_pro", "stemez")
    assert first["category"] == "physics"
    third = items["mmlu_pro:3"]
    assert third["prompt"].endswith("\nA. 4\nB. 5") and third["weak"] == third["strong"] == 0.0


def test_ten_options_get_letters_a_to_j():
    builder = load_builder()
    prompt = builder.multiple_choice("Pick one.", [str(number) for number in range(10)])
    assert prompt.splitlines()[1:] == [f"{letter}. {number}" for number, letter in enumerate("ABCDEFGHIJ")]
