"""Generated English-like documents for tests that need text but not a corpus."""

import json
import random

SUBJECTS = ["The miller", "A young clerk", "The old captain", "My neighbour", "The quiet child"]
VERBS = ["carried", "painted", "forgot", "found", "sold"]
OBJECTS = ["a red lantern", "the river boat", "seven letters", "a loaf of bread", "the brass key"]
PLACES = ["by the harbour", "before dawn", "in the long winter", "at the fair", "near the mill"]


def write_jsonl(path, num_docs, seed):
    """`num_docs` records {"id", "text"} of 3-8 sentences each, deterministic under `seed`."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(num_docs):
            sentences = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}."
                         for _ in range(rng.randint(3, 8))]
            handle.write(json.dumps({"id": f"doc-{seed}-{i}", "text": " ".join(sentences)}) + "\n")
    return path
