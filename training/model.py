"""A Llama-architecture causal LM built from ModelConfig's numbers; weights start random."""

from __future__ import annotations

from training.config import ModelConfig


def build_model(config: ModelConfig, vocab_size: int, eos_token_id: int, pad_token_id: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    llama_config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_seq_len,
        tie_word_embeddings=config.tie_embeddings,
        # The tokenizer uses one token to start and end documents (see training.tokenizer).
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(llama_config)


def count_parameters(model) -> int:
    """Unique parameters: a tied embedding and lm_head count once."""
    return sum(p.numel() for p in model.parameters())
