"""train.export_best: a run whose validation loss gets worse exports the weights of its best
evaluation, not the last step's (single CPU rank, tiny model)."""

import json
import random

import pytest

import training
from text_fixtures import OBJECTS, PLACES, SUBJECTS, VERBS
from training_fixtures import tiny_config


def write_sentences(path, num_docs, seed, words):
    rng = random.Random(seed)
    with path.open("w") as out:
        for i in range(num_docs):
            text = " ".join(" ".join(rng.choice(choices) for choices in words) + "." for _ in range(8))
            out.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")


@pytest.fixture(scope="module")
def shifted_dataset(tmp_path_factory):
    """Train and validation sentences built from disjoint halves of the vocabulary: the model
    first learns what they share (the shape of a sentence), then only the train half, and its
    validation loss rises (6.10 at step 5, 7.36 at step 15 here)."""
    root = tmp_path_factory.mktemp("shifted")
    write_sentences(root / "train.jsonl", 200, 1, [SUBJECTS[:2], VERBS[:2], OBJECTS[:2], PLACES[:2]])
    write_sentences(root / "validation.jsonl", 40, 2, [SUBJECTS[2:], VERBS[2:], OBJECTS[2:], PLACES[2:]])
    return root, training.train_tokenizer(tiny_config().tokenizer, root / "train.jsonl", root / "tokenizer")


def held_out_loss(model_dir, validation_jsonl) -> float:
    """The exported HF model's mean next-token loss on the validation text, read back from disk
    with transformers: nothing of the trainer's own evaluation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = [t for line in validation_jsonl.read_text().splitlines()
           for t in tokenizer(json.loads(line)["text"])["input_ids"]]
    blocks = torch.tensor(ids[: len(ids) // 64 * 64]).view(-1, 64)
    with torch.inference_mode():
        return float(model(blocks, labels=blocks).loss)


@pytest.mark.slow
def test_export_best_exports_the_best_evaluation_not_the_last_step(shifted_dataset, tmp_path):
    data, tokenizer = shifted_dataset
    settings = dict(max_steps=30, eval_every=5, lr=1e-2)
    last = training.run(tiny_config(**settings), data, tokenizer, tmp_path / "last")
    best = training.run(tiny_config(**settings, export_best=True), data, tokenizer, tmp_path / "best")

    log = [json.loads(line) for line in (best.model_dir / "train_log.jsonl").read_text().splitlines()]
    curve = {entry["step"]: entry["val_loss"] for entry in log if "val_loss" in entry}
    best_step = min(curve, key=curve.get)
    assert best_step < 30, f"the validation loss did not rise, the test shows nothing: {curve}"
    assert (last.exported_step, best.exported_step) == (30, best_step)
    assert best.val_loss == pytest.approx(curve[best_step], abs=1e-4)
    assert last.val_loss > best.val_loss + 0.3  # the plain run's last step, worse
    # The weights on disk are the best step's: worse on the train text's half of the vocabulary,
    # better on the validation half, by the margin the curve shows.
    best_loss = held_out_loss(best.model_dir, data / "validation.jsonl")
    last_loss = held_out_loss(last.model_dir, data / "validation.jsonl")
    assert best_loss < last_loss - 0.3, (best_loss, last_loss)
    # One best checkpoint is kept beside the step checkpoints, and never becomes `latest`.
    checkpoints = tmp_path / "best.checkpoints"
    assert [p.name for p in checkpoints.glob("best-step*")] == [f"best-step{best_step:08d}"]


def test_export_best_needs_evaluations():
    with pytest.raises(ValueError, match="export_best needs eval_every"):
        tiny_config(export_best=True)
