"""A Llama-architecture causal LM built from ModelConfig's numbers (weights start random), or
loaded from the checkpoint at `init_from`; optionally wrapped with LoRA adapters (peft). And the
teacher a distilled model learns from (DistillConfig)."""

from __future__ import annotations

from pathlib import Path

from training.config import DistillConfig, LoraConfig, ModelConfig, checkpoint_location


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


def load_pretrained(config: ModelConfig):
    """The causal LM at config.init_from, in float32. A GGUF file's blocks are dequantized into
    plain weights (its quantization error stays in them), so it trains and saves like any model."""
    import torch
    from transformers import AutoModelForCausalLM

    folder, gguf_file = checkpoint_location(config.init_from)
    model, loading = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32,
                                                          attn_implementation="sdpa", output_loading_info=True)
    # from_pretrained initializes a weight the checkpoint lacks at random and only logs it: a folder
    # in another layout (a Conveyor sparse-bitmask or torchao folder) would train from noise.
    if loading["missing_keys"]:
        missing = sorted(loading["missing_keys"])
        raise ValueError(f"model.init_from: {config.init_from} lacks {len(missing)} weights of the model "
                         f"(e.g. {missing[0]}): not a plain HF checkpoint of this architecture")
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # transformers keeps blocks packed only where a GGUF matmul kernel is installed: those
        # layers could neither train nor be saved.
        packed = [name for name, module in model.named_modules()
                  if isinstance(module, torch.nn.Linear) and type(module) is not torch.nn.Linear]
        if packed:
            raise RuntimeError(f"{config.init_from}: {len(packed)} layers stayed GGUF-packed (e.g. {packed[0]}); "
                               "training needs them dequantized: uninstall the `kernels` package")
        # What is left of the quantizer would make save_pretrained refuse ("not serializable").
        quantizer.remove_quantization_config(model)
    return model


def load_teacher(config: DistillConfig, vocab_size: int, device):
    """The distillation teacher, in float32 on this rank's device, for inference only: every rank
    holds a whole copy, outside DeepSpeed (it has no gradients or optimizer state to partition)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(config.teacher).expanduser()
    teacher_vocab_size = AutoConfig.from_pretrained(folder).vocab_size
    if teacher_vocab_size != vocab_size:
        raise ValueError(f"distill.teacher {config.teacher} has a vocabulary of {teacher_vocab_size} tokens, the "
                         f"model {vocab_size}: distillation compares their next-token distributions token by "
                         "token, so both need the same tokenizer")
    teacher = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa")
    teacher.requires_grad_(False)
    return teacher.eval().to(device)


def apply_lora(model, config: LoraConfig):
    """`model` with LoRA adapters on `target_modules`; everything else is frozen."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    return get_peft_model(model, PeftLoraConfig(
        r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=list(config.target_modules), task_type="CAUSAL_LM"))


def count_parameters(model) -> int:
    """Unique parameters: a tied embedding and lm_head count once."""
    return sum(p.numel() for p in model.parameters())


def count_trainable_parameters(model) -> int:
    """Parameters the optimizer updates; after ZeRO-3 partitioning a parameter's full size is ds_numel."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)
