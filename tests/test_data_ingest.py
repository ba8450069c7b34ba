"""Ingest sources: CSV, globs, S3 (a real SeaweedFS), and resume after a crash."""

import json
import os
import subprocess

import pytest

from data import ingest
from data.config import IngestConfig
from data.records import QUARANTINE_FILE, DataError
from data.shards import list_parts, partial_dir, read_records
from flows.services import free_port

RECORDS = [{"id": f"d{i}", "text": f"document {i} " * (i % 5 + 1), "lang": "en"} for i in range(120)]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_csv_and_globs(tmp_path):
    (tmp_path / "a.csv").write_text('id,text\nc1,"one, with a comma"\nc2,"two\nlines"\n', encoding="utf-8")
    write_jsonl(tmp_path / "b.jsonl", RECORDS[:2])
    write_jsonl(tmp_path / "skip.json", RECORDS[2:3])
    ingest.run(IngestConfig(paths=[str(tmp_path / "*.csv"), str(tmp_path / "b.*")]), None, tmp_path / "out")
    assert [r["id"] for r in read_records(tmp_path / "out")] == ["c1", "c2", "d0", "d1"]
    assert list(read_records(tmp_path / "out"))[1]["text"] == "two\nlines"


def test_a_crashed_ingest_resumes_to_the_uninterrupted_output(tmp_path, monkeypatch):
    (tmp_path / "raw").mkdir()
    for n in range(3):  # three sources, each with a duplicate id and a record without text
        write_jsonl(tmp_path / "raw" / f"{n}.jsonl",
                    RECORDS[n * 40:(n + 1) * 40] + [{"id": "dup", "text": "again"}, {"id": f"x{n}"}])
    config = IngestConfig(paths=[str(tmp_path / "raw")], records_per_part=15)
    reference = ingest.run(config, None, tmp_path / "reference")

    real = ingest.to_record

    def dies_at_d70(source, config):
        if source.get("id") == "d70":
            raise RuntimeError("killed")
        return real(source, config)

    monkeypatch.setattr(ingest, "to_record", dies_at_d70)
    with pytest.raises(RuntimeError, match="killed"):
        ingest.run(config, None, tmp_path / "out")
    assert not (tmp_path / "out").exists() and (partial_dir(tmp_path / "out") / ".done" / "ingest.json").is_file()
    monkeypatch.setattr(ingest, "to_record", real)
    resumed = ingest.run(config, None, tmp_path / "out")
    assert resumed.extra["shards_resumed"] == 4
    for name in [p.name for p in list_parts(tmp_path / "reference")] + [QUARANTINE_FILE]:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes()
    assert (resumed.records_in, resumed.records_out, resumed.dropped) == \
        (reference.records_in, reference.records_out, reference.dropped)


@pytest.fixture
def seaweedfs(tmp_path):
    """A real S3 endpoint: SeaweedFS `weed mini` on free ports of 127.0.0.1, bucket `corpus`, started
    the way `conveyor up --backend postgres` starts it (flows.services)."""
    from flows.services import S3_CREDENTIALS, seaweedfs_command, wait_for_bucket

    endpoint = f"http://127.0.0.1:{free_port()}"
    log_path = tmp_path / "weed.log"
    process = subprocess.Popen(seaweedfs_command(tmp_path / "weed", int(endpoint.rsplit(":", 1)[1]), "corpus"),
                               env={**os.environ, **S3_CREDENTIALS}, stdout=open(log_path, "wb"),
                               stderr=subprocess.STDOUT)
    try:
        try:
            client = wait_for_bucket(endpoint, 90, bucket="corpus", process=process)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {log_path.read_text(errors='replace')[-3000:]}") from None
        yield client, endpoint, dict(S3_CREDENTIALS)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_ingest_streams_from_s3(seaweedfs, tmp_path, monkeypatch):
    import gzip

    import pandas as pd

    client, endpoint, credentials = seaweedfs
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client.put_object(Bucket="corpus", Key="raw/a.jsonl", Body="".join(json.dumps(r) + "\n" for r in RECORDS[:50]))
    client.put_object(Bucket="corpus", Key="raw/b.jsonl.gz",
                      Body=gzip.compress("".join(json.dumps(r) + "\n" for r in RECORDS[50:100]).encode()))
    pd.DataFrame(RECORDS[100:]).to_parquet(tmp_path / "c.parquet")
    client.upload_file(str(tmp_path / "c.parquet"), "corpus", "raw/c.parquet")
    client.put_object(Bucket="corpus", Key="other/ignored.jsonl", Body=b'{"id": "no", "text": "no"}\n')

    stats = ingest.run(IngestConfig(paths=["s3://corpus/raw/"], s3_endpoint_url=endpoint, records_per_part=30),
                       None, tmp_path / "out")
    assert list(read_records(tmp_path / "out")) == RECORDS
    assert stats.extra["sources"] == 3 and len(list_parts(tmp_path / "out")) == 4

    # What goes wrong with S3 is one line saying what to do, never a botocore traceback.
    def refused(url: str, endpoint: str) -> str:
        with pytest.raises(DataError) as failed:
            ingest.run(IngestConfig(paths=[url], s3_endpoint_url=endpoint), None, tmp_path / "refused")
        return str(failed.value)

    assert refused("s3://nope/raw/", endpoint) == (f"no bucket 'nope' at {endpoint}: create it, or fix "
                                                   "data.ingest.paths")
    # `weed mini` takes any key; what S3 with IAM answers to a wrong one, as botocore raises it:
    from botocore.exceptions import ClientError

    from data.records import s3_problem

    wrong_key = ClientError({"Error": {"Code": "SignatureDoesNotMatch", "Message": "..."}}, "ListObjectsV2")
    assert s3_problem(wrong_key, "s3://corpus/raw/", endpoint).startswith(
        f"S3 at {endpoint} refused the credentials for s3://corpus/raw/ (SignatureDoesNotMatch)")
    for key in credentials:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it first found
    assert refused("s3://corpus/raw/", endpoint).startswith("no S3 credentials for s3://corpus/raw/")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "conveyor")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["AWS_SECRET_ACCESS_KEY"])
    down = f"http://127.0.0.1:{free_port()}"
    assert refused("s3://corpus/raw/", down).startswith(f"cannot reach the S3 endpoint {down} for s3://corpus/raw/")
