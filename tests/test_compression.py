"""The compression stage on a tiny random Llama: recipes, torchao int8, magnitude and Wanda pruning
(per row and 2:4) stored as sparse bitmasks, chains of variants, and what never gets published."""

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

import compression.stage
from compression import CompressionConfig, CompressionError, run
from compression.config import Magnitude, SparseGPT, Wanda
from compression.prune import keep_mask, prunable_layers, sparsegpt_weight
from core.models import folder_size_bytes, load_model, read_manifest
from core.stats import StageStats
from model_fixtures import TRAINING_TEXT, make_tiny_model_folder

PROMPT = "hello world, it was the best of times"


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return make_tiny_model_folder(tmp_path_factory.mktemp("base") / "model")


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("curated")
    for name in ("train.jsonl", "validation.jsonl"):
        (folder / name).write_text("".join(json.dumps({"text": text}) + "\n" for text in TRAINING_TEXT))
    return folder


@pytest.fixture(scope="module")
def variants(base_dir, dataset_dir, tmp_path_factory):
    """Every transform step, and a chain: a pruned model quantized, pointing at the pruned one."""
    config = CompressionConfig(variants={
        "int8": ["int8_weight_only"],
        "int8-dyn": ["int8_dynamic"],
        "int4": [{"int4_weight_only": {"group_size": 32}}],
        # alpha 0.5: this random model has no outlier channels to migrate (the default 0.9 is SmolLM2's)
        "smooth": [{"smoothquant": {"alpha": 0.5, "calibration_samples": 4, "calibration_seq_len": 32}}],
        "mag50": [{"magnitude": {"sparsity": 0.5}}],
        "wanda24": [{"wanda": {"pattern": "2:4", "calibration_samples": 4, "calibration_seq_len": 32}}],
        "wanda24-int8": ["wanda24", "int8"],
        "sgpt24": [{"sparsegpt": {"pattern": "2:4", "calibration_samples": 4, "calibration_seq_len": 32}}],
        "sgpt50": [{"sparsegpt": {"sparsity": 0.5, "calibration_samples": 4, "calibration_seq_len": 32,
                                  "block_size": 16}}],
    })
    from training.config import TrainingConfig

    built = run(config, base_dir, tmp_path_factory.mktemp("compressed"), dataset_dir, TrainingConfig())
    return {variant.name: variant for variant in built}


def logits(folder, text=PROMPT):
    model, tokenizer = load_model(folder)
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        return model(ids).logits


def decoder_weights(folder) -> dict:
    model, _ = load_model(folder)
    return {name: layer.weight.detach().clone() for name, layer in prunable_layers(model).items()}


# Recipes: every mistake a config can hold fails when it loads, naming the variant and step.
@pytest.mark.parametrize("variants, message", [
    ({"a": ["int9"]}, "unknown step or variant 'int9'"),
    ({"a": ["b"]}, "unknown step or variant 'b'"),
    ({"a": ["b", "int8_weight_only"], "b": ["a"]}, "a cycle: a -> b -> a"),
    ({"a": ["a"]}, "a cycle: a -> a"),
    ({"a": [{"wanda": {"sparsity": 1.0}}]}, "less than 1"),
    ({"a": [{"magnitude": {"sparsity": 0}}]}, "greater than 0"),
    ({"a": [{"wanda": {"pattern": "2:4", "sparsity": 0.3}}]}, "2:4 zeroes exactly half"),
    ({"a": [{"wanda": {"sparsity": 0.5, "bogus": 1}}]}, "bogus"),
    ({"a": ["int8_weight_only", "magnitude"]}, "quantization must be the last step"),
    ({"q": ["int8_weight_only"], "a": ["q", "magnitude"]}, "nothing can be applied after quantization"),
    ({"base": ["int8_weight_only"]}, "reserved"),
    ({"a": []}, "no steps"),
    ({"a": [{"distill": {}}]}, "layers"),
    ({"a": [{"int4_weight_only": {"group_size": 48}}]}, "group_size: Input should be 32, 64 or 128"),
    ({"a": [{"smoothquant": {"alpha": 1.5}}]}, "alpha: Input should be less than or equal to 1"),
    ({"a": [{"smoothquant": {"activations": "per_channel"}}]}, "activations: Input should be 'per_tensor' or 'per_token'"),
])
def test_bad_recipes_fail_when_the_config_loads(variants, message):
    with pytest.raises(ValidationError, match=message):
        CompressionConfig(variants=variants)


def test_chains_resolve_parents_first_with_inlined_steps():
    recipes = CompressionConfig(variants={
        "both": ["pruned", "int8"], "int8": ["int8_weight_only"], "pruned": [{"wanda": {"sparsity": 0.4}}]}).recipes()
    assert list(recipes).index("pruned") < list(recipes).index("both")
    assert recipes["both"].parent == "pruned"
    assert [step.kind for step in recipes["both"].steps] == ["int8_weight_only"]
    assert recipes["pruned"].steps[0].sparsity == 0.4


def test_shape_errors_fail_before_any_work(base_dir, dataset_dir, tmp_path):
    from training.config import TrainingConfig

    with pytest.raises(CompressionError, match="distill to 2 layers needs a teacher with more; it has 2"):
        run(CompressionConfig(variants={"s": [{"distill": {"layers": 2}}]}), base_dir, tmp_path, dataset_dir,
            TrainingConfig())
    with pytest.raises(CompressionError, match="wanda needs a dataset"):
        run(CompressionConfig(variants={"w": ["wanda"]}), base_dir, tmp_path)
    with pytest.raises(CompressionError, match="smoothquant needs a dataset"):
        run(CompressionConfig(variants={"s": ["smoothquant"]}), base_dir, tmp_path)
    odd = make_tiny_model_folder(tmp_path / "odd")
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "intermediate_size": 130}))
    with pytest.raises(CompressionError, match=r"2:4 pruning needs input widths divisible by 4: .*down_proj \(130\)"):
        run(CompressionConfig(variants={"m": [{"magnitude": {"pattern": "2:4"}}]}), odd, tmp_path / "out")
    with pytest.raises(CompressionError, match=r"int4 group_size 128 must divide every input width: .*q_proj \(64\)"):
        run(CompressionConfig(variants={"q": [{"int4_weight_only": {"group_size": 128}}]}), base_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_int8_variants_are_smaller_and_close(base_dir, variants):
    from torchao.quantization import Int8Tensor

    from core.int8 import Int8Embedding, Int8Linear

    for name, fmt, kind in (("int8", "int8", "int8_weight_only"), ("int8-dyn", "torchao", "int8_dynamic")):
        variant = variants[name]
        assert read_manifest(variant.path)["format"] == fmt
        assert read_manifest(variant.path)["quantization"] == kind
        size, base_size = folder_size_bytes(variant.path), folder_size_bytes(base_dir)
        diff = (logits(variant.path) - logits(base_dir)).abs().max().item()
        print(f"\n{name}: {size} B vs {base_size} B; max |logit diff| {diff:.4f}")
        assert diff < 0.05
    weight_only, _ = load_model(variants["int8"].path)
    assert isinstance(weight_only.model.layers[0].mlp.up_proj, Int8Linear)
    # The embedding is int8 as well, one matrix with the tied output layer: a quarter of the size.
    assert isinstance(weight_only.model.embed_tokens, Int8Embedding)
    assert weight_only.lm_head.qdata is weight_only.model.embed_tokens.qdata
    weights = (variants["int8"].path / "model.safetensors").stat().st_size
    assert weights < 0.3 * (base_dir / "model.safetensors").stat().st_size
    dynamic, _ = load_model(variants["int8-dyn"].path)
    assert isinstance(dynamic.model.layers[0].mlp.up_proj.weight, Int8Tensor)
    # torchao's tied output layer stays float and shares the embedding.
    assert dynamic.lm_head.weight is dynamic.model.embed_tokens.weight
    assert folder_size_bytes(variants["int8-dyn"].path) < 0.6 * folder_size_bytes(base_dir)


def test_loading_a_quantized_or_pruned_folder_builds_no_float_model(base_dir, variants):
    """load_model assigns the stored tensors to a model built on meta tensors: no float copy of
    the weights is initialized to be thrown away (an int8 SmolLM2 peaked at 1.6 GiB that way, 0.55
    after: benchmarks/load_bench.py). Counted here: the bytes of every float tensor an op writes
    on the CPU (an allocation alone, `empty`, writes nothing)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    allocations = {torch.ops.aten.empty.memory_format, torch.ops.aten.empty_strided.default}

    class FloatBytes(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in out if isinstance(out, (tuple, list)) else [out]:
                if (func not in allocations and isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu"
                        and tensor.is_floating_point()):
                    FloatBytes.total += tensor.numel() * tensor.element_size()
            return out

    float_bytes = (base_dir / "model.safetensors").stat().st_size
    written = {}
    for name in ("int8", "int4", "int8-dyn", "mag50"):
        FloatBytes.total = 0
        with FloatBytes():
            model, tokenizer = load_model(variants[name].path)
        written[name] = FloatBytes.total / float_bytes
        # and it computes: a batch of 4 rows (PyTorch's int8 kernel crashes on a weight 8 bytes
        # off a 64-byte boundary at 4 rows, as safetensors' load_file returns them: read_tensors)
        ids = tokenizer([PROMPT] * 4, return_tensors="pt").input_ids
        with torch.inference_mode():
            assert torch.isfinite(model(ids).logits).all()
    # int8, int4: norms, scales, rotary frequencies; int8-dyn: as they, and torch.load writes the
    # float embedding it keeps (this model's largest matrix) and torchao's tensors; pruned: the
    # dense matrices it decodes (zeros, then the kept values put in place: twice). Building the
    # float model first wrote 5-11 times the float weights.
    assert written["int8"] < 0.1 and written["int4"] < 0.1, written
    assert written["int8-dyn"] < 2 and written["mag50"] < 2.1, written


def test_a_damaged_weights_file_fails_to_load_with_its_name(variants, tmp_path):
    import shutil

    for name in ("int8", "mag50"):
        folder = tmp_path / name
        shutil.copytree(variants[name].path, folder)
        weights = folder / "model.safetensors"
        data = weights.read_bytes()
        weights.write_bytes(data[:-100])  # truncated
        with pytest.raises(ValueError, match=f"{weights}: .* is truncated"):
            load_model(folder)
        weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json" + data[16:])  # not a header
        with pytest.raises(ValueError, match="not a safetensors file"):
            load_model(folder)


def test_int8_layers_match_the_float_product_they_stand_for():
    from core.int8 import Int8Linear, quantize_rows

    torch.manual_seed(0)
    weight, bias, x = torch.randn(96, 64), torch.randn(96), torch.randn(3, 5, 64)
    layer = Int8Linear(*quantize_rows(weight), bias)
    qdata, scale = quantize_rows(weight)
    assert qdata.dtype == torch.int8 and (qdata.float() * scale[:, None] - weight).abs().max() <= scale.max() / 2 + 1e-6
    expected = torch.nn.functional.linear(x, weight, bias)
    error = (layer(x) - expected).norm() / expected.norm()
    assert layer(x).shape == (3, 5, 96) and layer(x).dtype == torch.float32
    assert error < 0.01, error  # int8 weights and bfloat16 activations: under 1% of the product


def test_int4_variant_is_the_smallest_and_close(base_dir, variants):
    from core.int4 import Int4Linear
    from core.int8 import Int8Embedding

    manifest = read_manifest(variants["int4"].path)
    assert (manifest["format"], manifest["quantization"], manifest["group_size"], manifest["algorithm"]) == \
        ("int4", "int4_weight_only", 32, "hqq")
    model, _ = load_model(variants["int4"].path)
    assert isinstance(model.model.layers[0].mlp.down_proj, Int4Linear)
    assert isinstance(model.model.embed_tokens, Int8Embedding) and model.lm_head.qdata is model.model.embed_tokens.qdata
    # The decoder's bytes: 4 bits a weight plus two bfloat16 numbers a group of 32 (0.625 bytes a
    # weight) against int8's byte a weight.
    from safetensors import safe_open

    decoder_bytes = {}
    for name in ("int4", "int8"):
        with safe_open(variants[name].path / "model.safetensors", "pt") as stored:
            decoder_bytes[name] = sum(stored.get_tensor(key).nbytes for key in stored.keys() if ".layers." in key)
    assert decoder_bytes["int4"] < 0.65 * decoder_bytes["int8"], decoder_bytes
    diff = (logits(variants["int4"].path) - logits(base_dir)).abs().max().item()
    assert diff < 0.1, diff


def test_smoothquant_stores_calibrated_int8_activations(base_dir, variants):
    from torchao.quantization import Int8Tensor

    manifest = read_manifest(variants["smooth"].path)
    assert (manifest["format"], manifest["quantization"], manifest["alpha"], manifest["activations"]) == \
        ("torchao", "smoothquant", 0.5, "per_tensor")
    model, _ = load_model(variants["smooth"].path)
    weight = model.model.layers[0].self_attn.q_proj.weight
    assert isinstance(weight, Int8Tensor) and weight.act_pre_scale is not None  # the smoothing factors
    assert weight.act_quant_scale.numel() == 1  # one static activation scale for the layer
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the tied output layer stays float, shared
    # Static scales from the calibration text clip what exceeds its range elsewhere: looser than int8's 0.05.
    assert (logits(variants["smooth"].path) - logits(base_dir)).abs().max() < 0.15


def test_smoothing_rescues_per_tensor_activations_from_an_outlier_channel(dataset_dir, tmp_path):
    """One input channel of layer 0's attention 100x the others (as SmolLM2's down_proj inputs
    are): a single int8 scale for the whole tensor then rounds the other channels away, unless
    SmoothQuant first moves the outlier into the weights."""
    from safetensors.torch import load_file, save_file

    folder = make_tiny_model_folder(tmp_path / "outlier")
    state = load_file(folder / "model.safetensors")
    state["model.layers.0.input_layernorm.weight"][5] = 100.0
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    blocks = {"calibration_samples": 4, "calibration_seq_len": 32}
    built = {v.name: v.path for v in run(CompressionConfig(variants={
        "smoothed": [{"smoothquant": {"alpha": 0.5, **blocks}}],
        "unsmoothed": [{"smoothquant": {"alpha": 0.0, **blocks}}]}), folder, tmp_path / "out", dataset_dir, None)}
    errors = {name: (logits(path) - logits(folder)).abs().max().item() for name, path in built.items()}
    assert errors["smoothed"] < 0.5 * errors["unsmoothed"], errors


def test_int4_after_pruning_warns_that_the_zeros_are_lost(base_dir, variants, tmp_path, caplog):
    recipe = CompressionConfig(variants={"q": ["int4_weight_only"]})
    with caplog.at_level("WARNING", logger="compression.stage"):
        run(recipe, base_dir, tmp_path / "dense")
        assert "int4 after pruning" not in caplog.text
        run(recipe, variants["mag50"].path, tmp_path / "pruned")
    assert "q: int4 after pruning" in caplog.text and "int8_weight_only keeps them" in caplog.text


def test_int4_layers_match_the_float_product_they_stand_for():
    from core.int4 import Int4Linear, pack_nibbles, unpack_nibbles

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 96)
    x = torch.randn(3, 5, 64)
    values = torch.randint(0, 16, (96, 64), dtype=torch.uint8)
    assert torch.equal(unpack_nibbles(pack_nibbles(values)), values)
    for algorithm in ("hqq", "tinygemm"):
        layer = Int4Linear.from_float(linear, 32, algorithm)
        with torch.inference_mode():
            dequantized = layer(torch.eye(64)).t() - linear.bias[:, None]  # the matrix the layer stands for
            expected = torch.nn.functional.linear(x, dequantized, linear.bias)
            error = ((layer(x) - expected).norm() / expected.norm()).item()
            weight_error = ((dequantized - linear.weight).norm() / linear.weight.norm()).item()
        assert layer(x).shape == (3, 5, 96) and error < 0.01, error  # bfloat16 activations: under 1%
        assert weight_error < 0.1, (algorithm, weight_error)  # 16 levels per group of 32: under 10%
        # Loading stored weights into a layer that has run packs them anew for the kernel.
        other = Int4Linear.from_float(torch.nn.Linear(64, 96), 32, algorithm)
        other(x)
        other.load_state_dict(layer.state_dict())
        assert torch.equal(other(x), layer(x))
        # So does assigning them to an empty layer (meta tensors), as load_model does.
        empty = Int4Linear.empty(linear, 32)
        assert empty.qweight.is_meta
        empty.load_state_dict(layer.state_dict(), assign=True)
        assert torch.equal(empty(x), layer(x))


def test_magnitude_prunes_half_of_every_row_and_stores_it_compressed(base_dir, variants):
    variant = variants["mag50"]
    assert read_manifest(variant.path)["format"] == "sparse-bitmask"
    before, after = decoder_weights(base_dir), decoder_weights(variant.path)
    for name, weight in after.items():
        zeros_per_row = (weight == 0).sum(dim=1)
        assert (zeros_per_row == weight.shape[1] // 2).all(), name
        # The kept weights are the row's largest in magnitude, unchanged.
        kept = weight != 0
        assert torch.equal(weight[kept], before[name][kept])
        smallest_kept = before[name].abs().where(kept, torch.inf).min(dim=1).values
        largest_pruned = before[name].abs().where(~kept, -torch.inf).max(dim=1).values
        assert (largest_pruned <= smallest_kept).all(), name
    size, base_size = folder_size_bytes(variant.path), folder_size_bytes(base_dir)
    print(f"\nmag50: {size} B vs {base_size} B")
    assert size < 0.8 * base_size  # the embedding (a third of this tiny model) stays dense


def test_wanda_2_4_keeps_two_of_every_four(variants):
    for name, weight in decoder_weights(variants["wanda24"].path).items():
        groups = (weight != 0).reshape(weight.shape[0], -1, 4).sum(dim=2)
        assert (groups <= 2).all() and (groups == 2).float().mean() > 0.99, name
    steps = read_manifest(variants["wanda24"].path)["steps"]
    assert steps[0]["step"] == "wanda" and steps[0]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert steps[0]["max_abs_logit_diff"] > 0


def test_sparsegpt_prunes_every_decoder_layer_to_its_pattern(variants):
    for name, weight in decoder_weights(variants["sgpt24"].path).items():
        groups = (weight != 0).reshape(weight.shape[0], -1, 4).sum(dim=2)
        assert (groups <= 2).all() and (groups == 2).float().mean() > 0.99, name
    for name, weight in decoder_weights(variants["sgpt50"].path).items():
        assert (weight == 0).float().mean(dim=1).sub(0.5).abs().max() < 0.02, name
    steps = read_manifest(variants["sgpt24"].path)["steps"]
    assert steps[0]["step"] == "sparsegpt" and steps[0]["sparsity"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("pattern", ["2:4", "unstructured"])
def test_sparsegpt_makes_up_for_the_weights_it_removes(pattern):
    # Correlated inputs, as a layer's are: what SparseGPT's update exploits and Wanda cannot.
    torch.manual_seed(0)
    inputs = torch.randn(512, 64) @ torch.randn(64, 64)
    weight = torch.randn(32, 64)
    hessian = 2 * inputs.T @ inputs / inputs.shape[0]
    pruned = sparsegpt_weight(weight, hessian, SparseGPT(pattern=pattern, block_size=16))
    wanda = weight * keep_mask(weight.abs() * inputs.norm(dim=0), Wanda(pattern=pattern))
    assert (pruned == 0).float().mean(dim=1).tolist() == [0.5] * 32

    def output_error(approximation):
        return float((inputs @ (weight - approximation).T).pow(2).mean())
    assert output_error(pruned) < 0.8 * output_error(wanda)  # 0.65-0.69x here; 1.01-1.22x without the update


def test_wanda_weighs_weights_by_their_input_norm():
    weights = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    norms = torch.tensor([10.0, 1.0, 1.0, 1.0])  # the first input is loud
    step = Magnitude(sparsity=0.5)
    assert keep_mask(weights.abs(), step).tolist() == [[False, False, True, True]]
    assert keep_mask(weights.abs() * norms, step).tolist() == [[True, False, False, True]]


def test_a_chained_variant_points_at_its_parent(variants):
    chained = variants["wanda24-int8"]
    manifest = read_manifest(chained.path)
    assert chained.parent == "wanda24" and manifest["parent"] == "wanda24"
    assert manifest["format"] == "int8" and [s["step"] for s in manifest["steps"]] == ["int8_weight_only"]
    # Quantized from the pruned model: its logits are near the pruned model's.
    assert (logits(chained.path) - logits(variants["wanda24"].path)).abs().max() < 0.05


def test_stats_report_each_steps_cost(variants):
    stats = StageStats.read(variants["int8"].path.parent)
    assert stats.stage == "compression" and stats.records_out == 9
    assert 0 < stats.extra["int8.size_ratio"] < 1
    assert 0 < stats.extra["int8.0.int8_weight_only.max_abs_logit_diff"] < 0.05
    assert stats.extra["mag50.0.magnitude.sparsity"] == pytest.approx(0.5)
    assert not (variants["int8"].path.parent / compression.stage.WORK_DIR).exists()


def test_failed_check_leaves_no_variant_folder(base_dir, tmp_path, monkeypatch):
    def broken_generate(model, tokenizer, name):
        raise CompressionError("cannot generate")

    monkeypatch.setattr(compression.stage, "check_generates", broken_generate)
    with pytest.raises(CompressionError, match="cannot generate"):
        run(CompressionConfig(), base_dir, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] in ([], [compression.stage.WORK_DIR])
    assert not (tmp_path / "int8").exists()


def test_non_finite_logits_publish_nothing(base_dir, tmp_path, monkeypatch):
    def poisoned(model, kind, **options):
        with torch.no_grad():
            model.model.layers[0].mlp.up_proj.weight.fill_(float("nan"))
        return model

    monkeypatch.setattr(compression.stage, "quantize", poisoned)
    with pytest.raises(CompressionError, match="int8_weight_only.*non-finite logits"):
        run(CompressionConfig(), base_dir, tmp_path)
    assert not (tmp_path / "int8").exists()


@pytest.fixture(scope="module")
def trained_variants(base_dir, dataset_dir, tmp_path_factory):
    """The steps that train, through the training stage (2 CPU ranks): a pruned model recovered
    from its parent, and a one-layer student distilled from the two-layer model."""
    from training.config import TrainConfig, TrainingConfig

    config = CompressionConfig(variants={
        "pruned": [{"wanda": {"sparsity": 0.5, "calibration_samples": 4, "calibration_seq_len": 32}}],
        "recovered": ["pruned", {"recover": {"steps": 4, "lr": 3e-3}}],
        # pruned and recovered in one chain, distilling from the dense model it started from
        "recovered-kd": [{"wanda": {"sparsity": 0.5, "calibration_samples": 4, "calibration_seq_len": 32}},
                         {"recover": {"steps": 4, "lr": 3e-3, "alpha": 1.0}}],
        "student": [{"distill": {"layers": 1, "steps": 4, "lr": 3e-3, "select": "angular", "calibration_samples": 2,
                                 "calibration_seq_len": 32, "eval_every": 2}}],
    })
    training = TrainingConfig(train=TrainConfig(seq_len=32, micro_batch_size=2, num_ranks=2, warmup_steps=0,
                                                log_every=2, eval_batches=1))
    import compression.train

    teachers = {}

    def train_step(step, model_dir, output, dataset_dir, training, teacher=None):  # the real one, its teacher noted
        teachers[output] = teacher
        return real_train_step(step, model_dir, output, dataset_dir, training, teacher)

    real_train_step = compression.train.train_step
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compression.train, "train_step", train_step)
        output = tmp_path_factory.mktemp("trained")
        built = {variant.name: variant for variant in run(config, base_dir, output, dataset_dir, training)}
    built["teachers"] = {Path(out).relative_to(output / ".work").parts[0]: teacher for out, teacher in teachers.items()}
    return built


def test_recover_trains_the_kept_weights_and_keeps_the_zeros(trained_variants):
    pruned, recovered = decoder_weights(trained_variants["pruned"].path), decoder_weights(trained_variants["recovered"].path)
    changed = 0
    for name, weight in recovered.items():
        assert torch.equal(weight == 0, pruned[name] == 0), f"{name}: the sparsity pattern moved"
        changed += int((weight != pruned[name]).sum())
    assert changed > 0.5 * sum(int((w != 0).sum()) for w in pruned.values())
    manifest = read_manifest(trained_variants["recovered"].path)
    assert manifest["format"] == "sparse-bitmask" and manifest["parent"] == "pruned"
    [report] = manifest["steps"]
    assert report["step"] == "recover" and report["steps"] == 4 and report["tokens"] == 4 * 2 * 2 * 32


def test_recover_with_alpha_distills_from_the_dense_model(base_dir, trained_variants):
    """alpha > 0: the pruned model trains on the logits of the model its chain started from (the
    dense base here), and the trainer ran it so."""
    assert trained_variants["teachers"]["recovered-kd"] == base_dir
    pruned_step, recover_step = trained_variants["recovered-kd"].steps
    assert recover_step["kd_alpha"] == 1.0 and recover_step["kd_temperature"] == 1.0  # the trainer's own record
    assert "kd_alpha" not in trained_variants["recovered"].steps[0]


def test_distill_builds_a_shallower_student_trained_on_the_teacher(base_dir, trained_variants):
    from transformers import AutoConfig

    student = trained_variants["student"]
    assert AutoConfig.from_pretrained(student.path).num_hidden_layers == 1
    assert folder_size_bytes(student.path) < folder_size_bytes(base_dir)
    [report] = student.steps
    assert report["step"] == "distill" and report["steps"] == 4 and report["teacher_layers"] == 2
    assert report["val_loss"] > 0
    assert report["exported_step"] in (2, 4)  # eval_every 2: the better of step 2's and the last step's
    assert trained_variants["recovered"].steps[0]["exported_step"] == 4  # no evaluations: the last


def test_a_training_step_with_eval_every_exports_its_best_evaluation(base_dir):
    from compression.config import Distill, Recover
    from compression.train import step_training_config
    from training.config import TrainingConfig

    for step in (Distill(layers=1, eval_every=50), Recover(eval_every=50)):
        train = step_training_config(TrainingConfig(), step, base_dir, base_dir).train
        assert (train.eval_every, train.export_best) == (50, True)
    train = step_training_config(TrainingConfig(), Recover(), base_dir).train
    assert (train.eval_every, train.export_best) == (0, False)


def test_angular_selection_drops_the_layers_that_change_the_hidden_state_least():
    """Layers 2 and 3 of six made to add nothing (their output projections zero): the run of two
    layers to drop is theirs; evenly spaced keeps first and last. Fails if the choice ignores the
    hidden states (any other run of two, or the evenly spaced [0, 2, 3, 5])."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from compression.train import angular_keep, evenly_spaced, student_of

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=6, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=64)).eval()
    for index in (2, 3):
        layer = model.model.layers[index]
        torch.nn.init.zeros_(layer.self_attn.o_proj.weight)
        torch.nn.init.zeros_(layer.mlp.down_proj.weight)
    blocks = [torch.randint(0, 64, (1, 16)) for _ in range(3)]
    keep = angular_keep(model, 4, blocks)
    assert keep == [0, 1, 4, 5] and evenly_spaced(6, 4) == [0, 2, 3, 5]
    student = student_of(model, 4, keep)
    with torch.inference_mode():  # dropping layers that add nothing changes no logit
        assert torch.allclose(student(blocks[0]).logits, model(blocks[0]).logits, atol=1e-5)


def test_training_refuses_a_folder_it_cannot_read_whole(variants):
    """from_pretrained would fill the weights a sparse-bitmask folder stores under other names with
    random ones; the trainer refuses it instead (compression saves a plain folder to train from)."""
    from training.config import ModelConfig
    from training.model import load_pretrained

    with pytest.raises(ValueError, match=r"lacks \d+ weights of the model"):
        load_pretrained(ModelConfig(init_from=str(variants["mag50"].path)))


@pytest.mark.parametrize("profile", sorted(p.stem for p in (Path(__file__).parent.parent / "configs").glob("*.yaml")))
def test_every_shipped_profile_loads_and_its_recipes_resolve(profile):
    from flows.config import load_config

    config = load_config(profile)
    assert config.compression.recipes()


def test_bf16_weights_halve_the_stored_floats_and_load_back_exactly(base_dir, dataset_dir, tmp_path):
    from training.config import TrainingConfig

    config = CompressionConfig(variants={
        "mag50": [{"magnitude": {"sparsity": 0.5}}],
        "mag50-bf16": ["mag50", "bf16_weights"],
        "bf16": ["bf16_weights"],
    })
    built = {v.name: v for v in run(config, base_dir, tmp_path / "out", dataset_dir, TrainingConfig())}
    assert built["mag50-bf16"].format == "sparse-bitmask" and built["bf16"].format == "hf"
    assert read_manifest(built["bf16"].path)["storage_dtype"] == "bfloat16"
    # The floats take half the bytes (the bitmask does not shrink; the tokenizer files are left out).
    def weights(folder):
        return (folder / "model.safetensors").stat().st_size

    assert weights(built["mag50-bf16"].path) < 0.6 * weights(built["mag50"].path)
    assert weights(built["bf16"].path) < 0.55 * weights(base_dir)
    model, _ = load_model(built["mag50-bf16"].path)
    weights = [p for p in model.parameters() if p.dim() == 2]
    assert all(p.dtype == torch.float32 for p in weights)  # computes in float32
    assert all(torch.equal(p, p.to(torch.bfloat16).float()) for p in weights)  # on the bfloat16 grid
    assert (logits(built["bf16"].path) - logits(base_dir)).abs().max() < 0.05
    with pytest.raises(ValidationError, match="after bf16_weights"):
        CompressionConfig(variants={"x": ["bf16_weights", {"magnitude": {"sparsity": 0.5}}]})
