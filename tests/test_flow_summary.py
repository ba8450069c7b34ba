"""The run summary (summary.json) as a typed model: what a run writes reads back the same, the
text rendering reads its fields, and a summary missing what the rendering needs is refused."""

import json

import pytest
from pydantic import ValidationError

from flows.summary import RunSummary, render_text

METRICS = {"bits_per_byte": 1.2, "perplexity": 30.5, "size_bytes": 4_000_000, "decode_tokens_per_s_b1": 50.0,
           "ttft_ms_b1": 12.0, "peak_memory_bytes": 9_000_000, "canary/extracted": 0.0,
           "conveyor_cloze/acc": 0.6, "conveyor_cloze/acc_stderr": 0.05}


def summary() -> dict:
    return {
        "run": "20261204-101010-quiet-otter", "run_dir": "/runs/20261204-101010-quiet-otter", "profile": "test",
        "stages": {"clean": {"stage": "clean", "records_in": 300, "records_out": 278, "dropped": {"language": 7},
                             "bytes_in": 1000, "bytes_out": 900, "seconds": 1.5, "extra": {"shards": 5},
                             "skipped": False},
                   "anonymize": {"stage": "anonymize", "records_in": 278, "records_out": 278, "dropped": {},
                                 "bytes_in": 900, "bytes_out": 890, "seconds": 0.5,
                                 "extra": {"not_looked_for": "PERSON,LOCATION"}, "skipped": True}},
        "training": {"model_dir": "/runs/x/model/base", "steps": 30, "resumed_from_step": 0, "skipped_batches": 0,
                     "final_train_loss": 5.3, "val_loss": 5.4, "exported_step": 20, "tokens_seen": 15360, "tokens_per_second": 900.0,
                     "seconds": 17.0, "seconds_per_step": 0.57, "num_parameters": 150000,
                     "trainable_parameters": 150000, "flops_per_token": 900000, "init_from": None, "lora": False,
                     "distill": None, "dp": None, "world_size": 2, "zero_stage": 2, "peak_memory_bytes": 400000000},
        "variants": {"base": METRICS, "int8": {**METRICS, "size_bytes": 1_000_000}},
        "compression": {"variants": [{"name": "int8", "parent": "base", "steps": [{"step": "int8_weight_only"}],
                                      "path": "/runs/x/model/int8"}], "tradeoff_plot": "/runs/x/tradeoff.png"},
        "registry": {"model_name": "conveyor-lm-test", "versions": {"base": "1", "int8": "2"}, "chosen": "int8",
                     "alias": "champion", "version": "2", "reason": "int8 is the smallest", "failed_bounds": [],
                     "champion_version": "2",
                     "previous_champion": {"version": "1", "variant": "base", "metrics": METRICS}},
        "lineage": {"dataset_dvc_md5": "abc.dir", "git_commit": "0123456789abcdef", "mlflow_run_id": "r1"},
        "bento": "conveyor-lm-test:xyz", "serving": {"host": "127.0.0.1", "port": 3000},
        "resumed_from": None, "seconds": 120.5,
    }


def test_a_summary_reads_back_as_written_and_renders_from_its_fields():
    written = summary()
    typed = RunSummary.model_validate(written)
    assert typed.registry.previous_champion.version == "1" and typed.stages["anonymize"].skipped
    again = json.loads(json.dumps(typed.model_dump(), default=str))
    assert again == {**written, "unchanged_since": None, "message": None}

    text = render_text(typed)
    assert "Registry: conveyor-lm-test version 2 (int8) -> alias 'champion'" in text
    assert "DVC skipped 1 unchanged stage(s): anonymize" in text
    assert "anonymize did NOT look for PERSON, LOCATION" in text
    assert "champion v1" in text and "0.25x" in text  # the previous champion's row; int8's size against base
    assert "Training: 30 steps on 2 rank(s), ZeRO-2, 150,000 params" in text
    assert "val loss 5.400 (the weights of step 20, the best evaluation)" in text  # export_best


def test_a_summary_without_what_it_must_hold_is_refused():
    broken = summary()
    del broken["registry"]["alias"]
    with pytest.raises(ValidationError, match="registry.alias"):
        RunSummary.model_validate(broken)
