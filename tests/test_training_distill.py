"""Knowledge distillation as a loss of the trainer (training.distill): the loss itself, plain and
chunked, its config, and a 2-layer student distilled from a tiny 4-layer teacher on 2 CPU ranks."""

import json
import os

import pytest
import torch
from pydantic import ValidationError

import training
from training_fixtures import dataset_and_tokenizer
from training.config import DistillConfig, ModelConfig, TrainConfig, TrainingConfig

os.environ["HF_HUB_OFFLINE"] = "1"  # teacher and student are local folders; nothing may reach for a hub

TEACHER_SHAPE = ModelConfig(hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=192,
                            max_seq_len=128)


def random_case(seed: int = 0, tokens: int = 300, hidden: int = 32, vocab: int = 1000):
    """Student hidden states and output weight (with gradients), a teacher's (without), targets."""
    generator = torch.Generator().manual_seed(seed)
    student_hidden = torch.randn(tokens, hidden, generator=generator).requires_grad_()
    student_weight = torch.randn(vocab, hidden, generator=generator).requires_grad_()
    teacher_hidden = torch.randn(tokens, 48, generator=generator)  # another width: only the vocabulary is shared
    teacher_weight = torch.randn(vocab, 48, generator=generator)
    targets = torch.randint(0, vocab, (tokens,), generator=generator)
    return student_hidden, student_weight, teacher_hidden, teacher_weight, targets


def test_distillation_loss_is_the_cross_entropy_at_alpha_0_and_zero_for_the_teacher_itself():
    from training.loss import distillation_loss

    student_hidden, student_weight, teacher_hidden, teacher_weight, targets = random_case()
    student_logits = (student_hidden @ student_weight.t())[None]  # [batch 1, seq, vocab]
    teacher_logits = (teacher_hidden @ teacher_weight.t())[None]
    cross_entropy = torch.nn.functional.cross_entropy(student_logits[0], targets)
    assert distillation_loss(student_logits, teacher_logits, targets[None], 2.0, 0.0).item() == pytest.approx(
        cross_entropy.item(), rel=1e-6)
    # alpha 1 with the teacher's own logits: nothing left to learn, at any temperature.
    for temperature in (1.0, 2.0, 5.0):
        assert distillation_loss(teacher_logits, teacher_logits, targets[None], temperature, 1.0).item() == \
            pytest.approx(0.0, abs=1e-5)
    # The soft term is the mean per token of T^2 * KL(teacher || student) at temperature T.
    temperature = 2.0
    teacher_probs = (teacher_logits[0] / temperature).softmax(-1)
    kl = (teacher_probs * (teacher_probs.log() - (student_logits[0] / temperature).log_softmax(-1))).sum(-1).mean()
    expected = 0.3 * temperature ** 2 * kl + 0.7 * cross_entropy
    assert distillation_loss(student_logits, teacher_logits, targets[None], temperature, 0.3).item() == \
        pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("temperature, alpha", [(2.0, 0.5), (1.0, 1.0), (4.0, 0.0)])
def test_chunked_distillation_loss_matches_the_plain_loss_and_gradients(temperature, alpha):
    from training.loss import linear_distillation_loss
    from training.loss import distillation_loss

    student_hidden, student_weight, teacher_hidden, teacher_weight, targets = random_case()
    student_logits, teacher_logits = student_hidden @ student_weight.t(), teacher_hidden @ teacher_weight.t()
    reference = distillation_loss(student_logits[None], teacher_logits[None], targets[None], temperature, alpha)
    reference_grads = torch.autograd.grad(3 * reference, (student_hidden, student_weight))

    loss = linear_distillation_loss(student_hidden, student_weight, teacher_hidden, teacher_weight, targets,
                                    chunk=64, temperature=temperature, alpha=alpha)  # 5 chunks, the last short
    grads = torch.autograd.grad(3 * loss, (student_hidden, student_weight))  # scaled by the upstream gradient
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    for got, expected in zip(grads, reference_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)

    # A frozen output weight (LoRA's tied embedding) gets no gradient; the hidden states' is the same.
    (frozen_grad,) = torch.autograd.grad(3 * linear_distillation_loss(
        student_hidden, student_weight.detach(), teacher_hidden, teacher_weight, targets, 64, temperature, alpha),
        (student_hidden,))
    torch.testing.assert_close(frozen_grad, reference_grads[0], rtol=1e-5, atol=1e-7)


def test_the_trainer_chunks_the_distillation_loss_only_with_chunked_loss_tokens(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from training.loss import attach_chunked_loss
    from training.loss import loss_function

    (tmp_path / "config.json").write_text("{}")  # enough for distill.teacher to name a HF folder
    distill = DistillConfig(teacher=str(tmp_path), temperature=2.0, alpha=0.7)
    torch.manual_seed(0)
    shape = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1)
    student = LlamaForCausalLM(LlamaConfig(num_hidden_layers=1, **shape))
    teacher = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, **shape)).eval().requires_grad_(False)
    block = torch.randint(0, 100, (2, 17))

    plain = loss_function(TrainingConfig(distill=distill), teacher)
    assert plain.__name__ == "plain_distillation_loss"
    expected = plain(student, block)  # the model stands in for the engine: both are called the same way
    attach_chunked_loss(student, chunk=8)
    chunked = loss_function(TrainingConfig(distill=distill, train=TrainConfig(chunked_loss_tokens=8)), teacher)
    assert chunked.__name__ == "chunked_distillation_loss"
    assert chunked(student, block).item() == pytest.approx(expected.item(), rel=1e-5)


def test_distill_config_names_a_missing_or_wrong_teacher(tmp_path):
    with pytest.raises(ValidationError, match=r"distill\.teacher\n.*not a HF model folder"):
        TrainingConfig.model_validate({"distill": {"teacher": str(tmp_path / "missing")}})
    with pytest.raises(ValidationError, match=r"distill\.alpha"):
        TrainingConfig.model_validate({"distill": {"teacher": str(tmp_path), "alpha": 1.5}})
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValidationError, match=r"distill\.temperature"):
        TrainingConfig.model_validate({"distill": {"teacher": str(tmp_path), "temperature": 0}})
    assert TrainingConfig.model_validate({"distill": {"teacher": str(tmp_path)}}).distill == DistillConfig(
        teacher=str(tmp_path), temperature=2.0, alpha=0.5)


def test_a_resume_must_distill_from_the_same_teacher(tmp_path):
    from training.checkpoint import resume_fingerprint

    for name in ("teacher", "other"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    plain = TrainingConfig()
    distilled = TrainingConfig(distill=DistillConfig(teacher=str(tmp_path / "teacher")))
    assert "distill" not in resume_fingerprint(plain)  # checkpoints of earlier runs still match
    assert resume_fingerprint(distilled)["distill"]["teacher"] == str(tmp_path / "teacher")
    for changed in ({"teacher": str(tmp_path / "other")}, {"temperature": 1.0}, {"alpha": 0.9}):
        other = TrainingConfig(distill=distilled.distill.model_copy(update=changed))
        assert resume_fingerprint(other) != resume_fingerprint(distilled)


def test_a_teacher_with_another_vocabulary_is_refused(tmp_path):
    from transformers import LlamaConfig

    from training.model import load_teacher

    LlamaConfig(vocab_size=100).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has a vocabulary of 100 tokens, the model 512"):
        load_teacher(DistillConfig(teacher=str(tmp_path)), 512, "cpu")


@pytest.fixture(scope="module")
def teacher_and_student(tmp_path_factory):
    """(dataset_dir, teacher_dir, student_dir): a curated dataset, a tiny random 4-layer Llama with
    its tokenizer, and a 2-layer student made of the teacher's layers 0 and 2."""
    from transformers import AutoModelForCausalLM

    from training.model import build_model

    root = tmp_path_factory.mktemp("distill")
    dataset_dir, tokenizer = dataset_and_tokenizer(root)
    torch.manual_seed(123)
    teacher_dir, student_dir = root / "teacher", root / "student"
    teacher = build_model(TEACHER_SHAPE, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    teacher.save_pretrained(teacher_dir)
    tokenizer.save_pretrained(teacher_dir)

    student = AutoModelForCausalLM.from_pretrained(teacher_dir)
    student.model.layers = student.model.layers[::2]
    student.config.num_hidden_layers = len(student.model.layers)
    student.save_pretrained(student_dir)  # loaded from the folder, its layers number themselves anew
    tokenizer.save_pretrained(student_dir)
    return dataset_dir, teacher_dir, student_dir


def kl_to_teacher(model_dir, teacher, ids) -> float:
    """Mean per token of KL(teacher || model) of their next-token distributions on `ids`."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        teacher_log_probs, log_probs = teacher(ids).logits.log_softmax(-1), model(ids).logits.log_softmax(-1)
    return (teacher_log_probs.exp() * (teacher_log_probs - log_probs)).sum(-1).mean().item()


@pytest.mark.parametrize("chunked_loss_tokens", [0, 48])
def test_a_student_distills_from_its_teacher_on_two_ranks(teacher_and_student, tmp_path, chunked_loss_tokens):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dataset_dir, teacher_dir, student_dir = teacher_and_student
    # alpha 1: the teacher's distribution alone is the target (a random teacher's is far from the
    # data's, which the cross-entropy would pull towards instead).
    config = TrainingConfig(
        model=ModelConfig(init_from=str(student_dir)),
        train=TrainConfig(seq_len=64, micro_batch_size=4, max_steps=10, lr=1e-3, warmup_steps=0, num_ranks=2,
                          log_every=5, eval_batches=1, chunked_loss_tokens=chunked_loss_tokens),
        distill=DistillConfig(teacher=str(teacher_dir), temperature=2.0, alpha=1.0))
    tokenizer_dir = training.prepare_tokenizer(config, dataset_dir / "train.jsonl", tmp_path / "tokenizer")
    result = training.run(config, dataset_dir, tokenizer_dir, tmp_path / "model")

    assert result.steps == 10 and result.world_size == 2
    assert result.distill == {"teacher": str(teacher_dir), "temperature": 2.0, "alpha": 1.0}
    assert json.loads((result.model_dir / "result.json").read_text())["distill"]["teacher"] == str(teacher_dir)
    assert result.final_train_loss == result.final_train_loss and result.val_loss is not None  # not NaN
    assert AutoModelForCausalLM.from_pretrained(result.model_dir).config.num_hidden_layers == 2

    # The student moved towards its teacher: on validation text, their distributions are closer.
    text = " ".join(json.loads(line)["text"] for line in (dataset_dir / "validation.jsonl").read_text().splitlines())
    ids = torch.tensor(AutoTokenizer.from_pretrained(tokenizer_dir)(text)["input_ids"][: 4 * 64]).view(4, 64)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    assert kl_to_teacher(result.model_dir, teacher, ids) < 0.75 * kl_to_teacher(student_dir, teacher, ids)
