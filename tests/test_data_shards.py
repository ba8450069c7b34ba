"""The shard executor: the same output with 1 or 2 workers, and resume after a crash."""

from collections import Counter
from functools import partial

import pytest

from core.stats import StageStats
from data.shards import list_parts, map_shards, partial_dir, read_records, samples_path, write_parts

RECORDS = [{"id": f"r{i}", "text": f"record number {i} " * (i % 7 + 1)} for i in range(250)]


class DropOddLengths:
    """Keeps records whose text length is even and upper-cases them; counts what it saw."""

    def __init__(self, crash_on: str | None = None):
        self.crash_on = crash_on
        self.counters = Counter()

    def process(self, record):
        if record["id"] == self.crash_on:
            raise RuntimeError("worker killed")
        self.counters["seen"] += 1
        if len(record["text"]) % 2:
            return "odd_length"
        return {**record, "text": record["text"].upper()}


@pytest.fixture
def sharded(tmp_path):
    assert write_parts(RECORDS, tmp_path / "in", records_per_part=40) == 250
    return tmp_path / "in"


def folder_bytes_by_name(folder):
    return {p.name: p.read_bytes() for p in list_parts(folder)}


def test_parts_keep_order_and_size(sharded):
    assert [len(list(read_records(sharded)))] == [250]
    assert len(list_parts(sharded)) == 7
    assert [r["id"] for r in read_records(sharded)] == [r["id"] for r in RECORDS]


def test_two_workers_give_the_same_output_as_one(sharded, tmp_path):
    one = map_shards("t", DropOddLengths, sharded, tmp_path / "one", workers=1)
    two = map_shards("t", DropOddLengths, sharded, tmp_path / "two", workers=2)
    assert folder_bytes_by_name(tmp_path / "one") == folder_bytes_by_name(tmp_path / "two")
    assert (one.records_in, one.records_out, one.dropped) == (two.records_in, two.records_out, two.dropped)
    assert one.records_in == 250 and one.records_out + one.dropped["odd_length"] == 250
    assert one.extra["seen"] == 250 and one.extra["shards"] == 7
    assert StageStats.read(tmp_path / "two") == two
    samples = samples_path(tmp_path / "two").read_text().splitlines()
    assert 1 <= len(samples) <= 3 and "odd_length" in samples[0]


def test_a_crashed_run_resumes_from_completed_shards(sharded, tmp_path):
    reference = map_shards("t", DropOddLengths, sharded, tmp_path / "reference")
    # Record r130 is in the fourth shard: shards 0-2 complete, then the "worker" dies.
    with pytest.raises(RuntimeError, match="worker killed"):
        map_shards("t", partial(DropOddLengths, crash_on="r130"), sharded, tmp_path / "out")
    assert not (tmp_path / "out").exists(), "a crashed stage must not leave an output that looks whole"
    assert len(list(partial_dir(tmp_path / "out").glob(".done/*.json"))) == 3
    resumed = map_shards("t", DropOddLengths, sharded, tmp_path / "out")
    assert resumed.extra["shards_resumed"] == 3
    assert folder_bytes_by_name(tmp_path / "out") == folder_bytes_by_name(tmp_path / "reference")
    assert (resumed.records_out, resumed.dropped) == (reference.records_out, reference.dropped)
    assert not partial_dir(tmp_path / "out").exists()
