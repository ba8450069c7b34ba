"""Task accuracy through lm-evaluation-harness (evaluation/tasks): the builder's pure functions on
made-up documents, the invariants of the committed task files, and run_tasks on a tiny random
Llama, checked against the same log-likelihoods computed with the model directly."""

import json
import math
import random
import re
import textwrap

import pytest
import torch

from core.models import load_model, quantize
from evaluation.tasks import TASK_DIR, TASKS, run_tasks
from evaluation.tasks.build_tasks import (
    LENGTH_TOLERANCE,
    TRAINING_FILES,
    build,
    load_jsonl,
    ngrams,
    paragraphs,
    split_sentences,
    training_ngrams,
)
from model_fixtures import make_tiny_model_folder

NAMES = ["Emma", "Harriet", "Fanny", "Edmund", "Catherine", "Henry", "Elinor", "Marianne"]
NOUNS = ["garden", "letter", "carriage", "piano", "sermon", "parish", "shrubbery", "portrait"]
VERBS = ["praised", "mentioned", "doubted", "admired", "described", "forgot", "remembered", "disliked"]
ADJECTIVES = ["old", "new", "large", "pretty", "damp", "famous", "dreadful", "quiet"]


def made_up_documents() -> list[dict]:
    """Austen-like chapters (wrapped at 70 columns, _italics_) and Brown-like texts of random
    sentences that end in a word seen earlier, plus a Northanger Abbey chapter for the reference."""
    rng = random.Random(7)

    def sentence() -> str:
        noun = rng.choice(NOUNS)
        return (f"{rng.choice(NAMES)} {rng.choice(VERBS)} the {rng.choice(ADJECTIVES)} {noun} near "
                f"{rng.choice(NAMES)}, and Mr. {rng.choice(NAMES)} {rng.choice(VERBS)} "
                f"the _{rng.choice(ADJECTIVES)}_ {noun}.")

    documents = []
    for source, count in (("austen/emma", 3), ("austen/northanger_abbey", 1), ("brown/news", 4)):
        for number in range(1, count + 1):
            blocks = ["\n".join(textwrap.wrap(" ".join(sentence() for _ in range(6)), 70)) for _ in range(5)]
            documents.append({"id": f"{source}/{number:03d}", "source": source, "text": "\n\n".join(blocks)})
    return documents


def check_items(cloze: list[dict], nextsentence: list[dict]) -> None:
    for item in cloze:
        assert re.fullmatch(r"[A-Za-z]{3,}", item["target"]), item
        assert re.search(rf"\b{item['target']}\b", item["context"]), item
        assert 40 <= len(item["context"].split()) + 1 <= 120, item
        assert item["context"] == item["context"].strip()
    for item in nextsentence:
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4, item
        assert item["label"] in range(4)
        answer = item["choices"][item["label"]]
        assert all(abs(len(c) - len(answer)) <= LENGTH_TOLERANCE * len(answer) + 1 for c in item["choices"]), item
        assert item["context"] and answer not in item["context"]
    for items in (cloze, nextsentence):
        assert len({item["id"] for item in items}) == len(items)


# ---- the builder's pure functions

def test_sentences_split_after_full_stops_but_not_after_titles():
    text = 'Mr. Knightley came in. "Mrs. Weston is here!" said Dr. Perry. Was it J. Smith? Yes.'
    assert split_sentences(text) == ["Mr. Knightley came in.", '"Mrs. Weston is here!" said Dr. Perry.',
                                     "Was it J. Smith?", "Yes."]


def test_paragraphs_unwrap_lines_and_drop_italics_markers():
    text = "It was _very_ late,\nand  dark.\n\n\nNext  one.\n"
    assert paragraphs(text) == ["It was very late, and dark.", "Next one."]


def test_build_is_deterministic_and_keeps_the_invariants():
    documents = made_up_documents()
    first = build(documents, items_per_family=5, reference_chars=1500)
    assert build(documents, items_per_family=5, reference_chars=1500) == first
    cloze, nextsentence, reference = first
    assert len(cloze) == len(nextsentence) == 10
    check_items(cloze, nextsentence)
    assert {item["source"].split("/")[0] for item in cloze + nextsentence} == {"austen", "brown"}
    assert "Mr." in json.dumps(cloze) and "_" not in json.dumps(cloze)
    # The reference text takes Northanger Abbey chapter 1, which the tasks then leave alone.
    assert 1000 < len(reference) <= 1501 and reference.startswith(paragraphs(documents[3]["text"])[0])
    assert not any(item["id"].startswith("austen/northanger_abbey/001") for item in cloze + nextsentence)


def test_build_drops_items_that_share_13_words_with_the_training_text():
    documents = made_up_documents()
    training = ngrams(documents[0]["text"])  # austen/emma/001 as if it were trained on
    cloze, nextsentence, _ = build(documents, training, items_per_family=5, reference_chars=1500)
    assert cloze and nextsentence
    assert not any(item["id"].startswith("austen/emma/001:") for item in cloze + nextsentence)
    assert any(item["id"].startswith("austen/emma/002:") for item in cloze + nextsentence)


# ---- the committed task files

@pytest.fixture(scope="module")
def committed():
    return {name: [json.loads(line) for line in (TASK_DIR / f"{name}.jsonl").read_text().splitlines()]
            for name in TASKS}


def test_committed_task_files_keep_the_invariants(committed):
    cloze, nextsentence = committed["conveyor_cloze"], committed["conveyor_nextsentence"]
    assert len(cloze) == len(nextsentence) == 1000
    check_items(cloze, nextsentence)
    for items in (cloze, nextsentence):
        families = [item["source"].split("/")[0] for item in items]
        assert families.count("austen") == families.count("brown") == 500
        assert set(families[:100]) == {"austen", "brown"}  # shuffled: a `limit` sees both
    labels = [item["label"] for item in nextsentence]
    assert all(labels.count(label) > 150 for label in range(4))
    reference = (TASK_DIR / "reference.txt").read_text()
    assert 35_000 < len(reference) <= 40_001 and reference.count("\n\n") > 50
    assert not any(item["context"][:80] in reference for item in cloze + nextsentence)
    assert sum(p.stat().st_size for p in TASK_DIR.iterdir() if p.is_file()) < 1.5e6


def test_committed_items_are_not_in_the_training_text(committed):
    items = [f"{item['context']} {item['target']}" for item in committed["conveyor_cloze"]]
    items += [f"{item['context']} {item['choices'][item['label']]}" for item in committed["conveyor_nextsentence"]]
    items += paragraphs((TASK_DIR / "reference.txt").read_text())
    training = training_ngrams()
    assert not training.isdisjoint(ngrams(load_jsonl(TRAINING_FILES[1])[0]["text"]))  # the check can fail
    assert all(training.isdisjoint(ngrams(text)) for text in items)
    # And literally, for every 20th item, without the 13-gram machinery.
    words = " ".join(" ".join(re.findall(r"[a-z0-9]+", d["text"].lower()))
                     for path in TRAINING_FILES for d in load_jsonl(path))
    for text in items[::20]:
        assert " ".join(re.findall(r"[a-z0-9]+", text.lower())[:12]) not in words, text


# ---- run_tasks on a tiny random model

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model(make_tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model"))


def direct_scores(model, tokenizer, limit: int) -> dict[str, dict[str, float]]:
    """The tasks' metrics from the model's own log-probabilities (contexts cut from the left to the
    model's window, as lm-eval does), without lm-eval."""
    window = model.config.max_position_embeddings

    def score(context: str, continuation: str) -> tuple[float, bool]:
        context_ids = tokenizer(context).input_ids
        whole = tokenizer(context + continuation).input_ids
        tokens = whole[-(window + 1):]
        n = len(whole) - len(context_ids)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([tokens[:-1]])).logits[0, -n:].float(), dim=-1)
        targets = torch.tensor(tokens[-n:])
        return logp.gather(1, targets[:, None]).sum().item(), bool((logp.argmax(-1) == targets).all())

    cloze = [json.loads(line) for line in (TASK_DIR / "conveyor_cloze.jsonl").read_text().splitlines()[:limit]]
    results = [score(item["context"], " " + item["target"]) for item in cloze]
    scores = {"conveyor_cloze": {"acc": sum(greedy for _, greedy in results) / limit,
                                 "perplexity": math.exp(-sum(ll for ll, _ in results) / limit)}}
    lines = (TASK_DIR / "conveyor_nextsentence.jsonl").read_text().splitlines()[:limit]
    correct = correct_norm = 0
    for item in map(json.loads, lines):
        lls = [score(item["context"], " " + choice)[0] for choice in item["choices"]]
        per_char = [ll / len(choice) for ll, choice in zip(lls, item["choices"])]
        correct += max(range(4), key=lls.__getitem__) == item["label"]
        correct_norm += max(range(4), key=per_char.__getitem__) == item["label"]
    scores["conveyor_nextsentence"] = {"acc": correct / limit, "acc_norm": correct_norm / limit}
    return scores


def test_run_tasks_reports_accuracies_with_stderr(tiny):
    scores = run_tasks(*tiny, list(TASKS), limit=20, batch_size=4)
    print(f"\ntiny random model: {scores}")
    assert set(scores["conveyor_cloze"]) == {"acc", "acc_stderr", "perplexity", "n"}
    assert set(scores["conveyor_nextsentence"]) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n"}
    for metrics in scores.values():
        assert metrics["n"] == 20
        assert all(0 <= metrics[name] <= 1 for name in metrics if name.startswith("acc"))
    assert scores["conveyor_cloze"]["perplexity"] > 1


def test_context_truncations_are_one_line_not_one_per_request(tiny, caplog):
    """The tiny model's short context makes lm-eval cut most passages; a warning each flooded the
    run log (and Prefect's)."""
    import logging

    with caplog.at_level(logging.WARNING):
        run_tasks(*tiny, ["conveyor_nextsentence"], limit=10, batch_size=4)
    messages = [record.getMessage() for record in caplog.records]
    assert not [m for m in messages if "exceeds model's maximum length" in m]
    cut = [m for m in messages if m.startswith("lm-eval cut ")]
    assert len(cut) == 1 and int(cut[0].split()[2]) > 1, messages


def test_run_tasks_agrees_with_the_model_scored_directly(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the task files are found from any working directory
    scores = run_tasks(*tiny, list(TASKS), limit=10)
    expected = direct_scores(*tiny, limit=10)
    print(f"\nlm-eval {scores}\ndirect  {expected}")
    for task, metrics in expected.items():
        for name, value in metrics.items():
            assert scores[task][name] == pytest.approx(value, rel=1e-4), (task, name)


def test_run_tasks_scores_a_quantized_model(tiny, tmp_path):
    model, tokenizer = load_model(make_tiny_model_folder(tmp_path / "model"))
    quantize(model, "int8_weight_only", embeddings=True)
    scores = run_tasks(model, tokenizer, ["conveyor_cloze"], limit=5)
    fp32 = run_tasks(*tiny, ["conveyor_cloze"], limit=5)
    assert scores["conveyor_cloze"]["n"] == 5
    assert scores["conveyor_cloze"]["perplexity"] == pytest.approx(fp32["conveyor_cloze"]["perplexity"], rel=0.1)


def test_unknown_task_is_an_error(tiny):
    with pytest.raises(ValueError, match="unknown tasks"):
        run_tasks(*tiny, ["hellaswag"])
