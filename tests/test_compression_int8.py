
import pytest
import torch

from compression import Variant, run
from compression.config import CompressionConfig
from core.models import folder_size_bytes, load_model, read_manifest
from core.stats import StageStats
from model_fixtures import make_tiny_model_folder

PROMPT = "hello world, it was the best of times"


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return make_tiny_model_folder(tmp_path_factory.mktemp("base") / "model")


@pytest.fixture(scope="module")
def variants(base_dir, tmp_path_factory):
    return run(CompressionConfig(), base_dir, tmp_path_factory.mktemp("compressed"))


def logits(folder, text=PROMPT):
    model, tokenizer = load_model(folder)
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        return model(ids).logits


def test_int8_variant_is_a_loadable_int8_folder(variants):
    [variant] = variants
    assert variant == Variant(name="int8_dynamic", path=variant.path, method="int8_dynamic", parent="base")
    assert variant.path.name == "int8_dynamic"
    assert read_manifest(variant.path) == {"format": "int8-dynamic", "parent": "base", "method": "int8_dynamic"}
    model, tokenizer = load_model(variant.path)
    ids = tokenizer("hello", return_tensors="pt").input_ids
    output = model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id)
    assert output.shape[1] == ids.shape[1] + 4
    assert isinstance(tokenizer.decode(output[0]), str)


def test_int8_variant_is_smaller_and_close_to_float(base_dir, variants):
    [variant] = variants
    base_size, int8_size = folder_size_bytes(base_dir), folder_size_bytes(variant.path)
    assert int8_size < 0.7 * base_size, (int8_size, base_size)
    diff = (logits(variant.path) - logits(base_dir)).abs().max().item()
    print(f"\nint8 folder {int8_size} B vs float {base_size} B; max |logit diff| {diff:.4f}")
    assert diff < 0.1


def test_tied_lm_head_stays_float_and_tied(variants):
    model, _ = load_model(variants[0].path)
    assert type(model.lm_head) is torch.nn.Linear
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert type(model.model.layers[0].mlp.up_proj) is torch.ao.nn.quantized.dynamic.Linear


def test_stats_report_size_and_logit_error(variants):
    stats = StageStats.read(variants[0].path.parent)
    assert stats.stage == "compression" and stats.records_out == 1
    assert 0 < stats.extra["int8_dynamic.size_ratio"] < 1
    assert 0 < stats.extra["int8_dynamic.max_abs_logit_diff"] < 0.1


def test_failed_check_leaves_no_variant_folder(base_dir, tmp_path, monkeypatch):
    import compression.quantize

    def broken_generate(model, tokenizer):
        raise RuntimeError("cannot generate")

    monkeypatch.setattr(compression.quantize, "check_generates", broken_generate)
    with pytest.raises(RuntimeError, match="cannot generate"):
        run(CompressionConfig(), base_dir, tmp_path)
    assert list(tmp_path.iterdir()) == []
