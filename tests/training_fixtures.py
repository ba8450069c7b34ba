"""The tiny model and training config the trainer tests share (tests/ is on sys.path)."""

from training.config import ModelConfig, TokenizerConfig, TrainConfig, TrainingConfig

# A 2-layer, 64-wide Llama (GQA, 2 KV heads): the model of every trainer test that builds one.
TINY_MODEL = ModelConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=192,
                         max_seq_len=128)


def tiny_config(**train_overrides) -> TrainingConfig:
    """A 2-layer, 64-wide Llama on a 512-token vocabulary, one CPU rank, 20 steps logged every 5."""
    train = dict(seq_len=64, micro_batch_size=4, max_steps=20, lr=3e-3, warmup_steps=0,
                 num_ranks=1, log_every=5, eval_batches=2)
    return TrainingConfig(
        tokenizer=TokenizerConfig(vocab_size=512),
        model=TINY_MODEL,
        train=TrainConfig(**{**train, **train_overrides}),
    )


def dataset_and_tokenizer(root):
    """(dataset_dir, tokenizer): a curated dataset of generated text under `root` (200 train, 30
    validation documents) and a 512-token BPE trained on it, for tests that build a model folder."""
    from transformers import AutoTokenizer

    import training
    from text_fixtures import write_jsonl

    dataset_dir = root / "data"
    dataset_dir.mkdir()
    write_jsonl(dataset_dir / "train.jsonl", 200, seed=1)
    write_jsonl(dataset_dir / "validation.jsonl", 30, seed=2)
    tokenizer = AutoTokenizer.from_pretrained(
        training.train_tokenizer(TokenizerConfig(vocab_size=512), dataset_dir / "train.jsonl", root / "tok"))
    return dataset_dir, tokenizer
