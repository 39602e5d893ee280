"""Request records with a real worker: redacted, queryable, kept across worker and Redis restarts,
and deleted per the retention setting."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from ops.localfleet import RedisServer, WorkerProcess, run_cli
from qfleet.producer.client import FleetClient
from qfleet.tasks.errors import JobFailedError
from qfleet.tasks.records import TABLE
from qfleet.tasks.settings import Settings

pytestmark = pytest.mark.timeout(300)

SECRET_MAIL = "ada.lovelace@example.com"
SECRET_PHONE = "+44 20 7946 0958"


def records_env(tiny_model: Path, records_url: str, prefix: str, redis_url: str) -> dict[str, str]:
    return {
        "QFLEET_BROKER_URL": redis_url,
        "QFLEET_REDIS_KEY_PREFIX": prefix,
        "QFLEET_MODEL_DIR": str(tiny_model),
        "QFLEET_CPU_THREADS": "1",
        "QFLEET_RECORDS": "on",
        "QFLEET_RECORDS_URL": records_url,
        "QFLEET_RECORDS_REDACT_PATTERNS": json.dumps([r"ACCT-\d+"]),
        "QFLEET_MAX_NEW_TOKENS": "64",  # the worker refuses more than this producer allows
    }


def run_across_restarts(
    env: dict[str, str], server: RedisServer, log_dir: Path
) -> tuple[str, str, str]:
    """A redacted job and a refused one, then worker and Redis restart, then one more job."""
    settings = Settings(broker_url=server.url, redis_key_prefix=env["QFLEET_REDIS_KEY_PREFIX"])
    worker = WorkerProcess(env, log_dir / "w1.log", hostname="rec1@test").start()
    try:
        with FleetClient(settings) as fleet:
            prompt = f"Mail {SECRET_MAIL} or call {SECRET_PHONE} about ACCT-991."
            first = fleet.submit({"job_id": "nightly1.a", "prompt": prompt, "max_tokens": 4})
            fleet.wait(first, timeout=120)
            failing = fleet.submit({"prompt": "hi", "max_tokens": 1_000})
            with pytest.raises(JobFailedError):
                fleet.wait(failing, timeout=120)
        worker.stop()
        server.stop()
        server.start()
        worker = WorkerProcess(env, log_dir / "w2.log", hostname="rec2@test").start()
        with FleetClient(settings) as fleet:
            second = fleet.wait(fleet.submit({"prompt": "Hello", "max_tokens": 4}), timeout=120)
    finally:
        worker.stop()
    return first, failing, second.job_id


def test_records_are_redacted_durable_and_expire(
    tiny_model: Path, records_url: str, clean_records: str, tmp_path: Path
) -> None:
    # Given: a fleet on its own Redis whose worker keeps redacted records in PostgreSQL
    server = RedisServer(tmp_path / "redis").start()
    env = records_env(tiny_model, records_url, clean_records, server.url)
    # When: a job with an e-mail address, a phone number and an account id runs, one that the
    # worker refuses (a token budget above its limit), then worker and Redis restart, and a
    # third job runs
    try:
        first, failing, second = run_across_restarts(env, server, tmp_path)
    finally:
        server.stop()
    # Then: all three records are there, the failure with its code, none with the secrets
    with psycopg.connect(records_url, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT job_id, status, error_code, record::text FROM {TABLE} WHERE fleet = %s",
            (clean_records,),
        ).fetchall()
    by_id = {r[0]: r for r in rows}
    assert set(by_id) == {first, failing, second}
    assert by_id[failing][1:3] == ("failed", "invalid_job")
    stored = by_id[first][3]
    for secret in (SECRET_MAIL, SECRET_PHONE, "ACCT-991"):
        assert secret not in stored
    assert "[redacted:email]" in stored
    assert "[redacted:pattern0]" in stored
    # ... they are found by run and exported as JSONL
    out = tmp_path / "run.jsonl"
    done = run_cli(["records", "export", "--run", "nightly1", "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["job_id"] for r in exported] == [first]
    assert exported[0]["model_id"] == "qfleet-tiny-qwen2-v2"
    assert exported[0]["timings"]["total_ms"] > 0
    check_retention(env, records_url, clean_records, first)


def check_retention(env: dict[str, str], records_url: str, fleet: str, old_job: str) -> None:
    # When: one record is 40 days old and retention is 0 (keep), then 30 days
    with psycopg.connect(records_url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {TABLE} SET finished_at = now() - interval '40 days' "
            "WHERE fleet = %s AND job_id = %s",
            (fleet, old_job),
        )
    keep_all = run_cli(["records", "purge"], env | {"QFLEET_RECORDS_RETENTION_DAYS": "0"})
    purged = run_cli(["records", "purge"], env | {"QFLEET_RECORDS_RETENTION_DAYS": "30"})
    # Then: retention 0 keeps it, 30 days deletes it and only it
    assert keep_all.stdout.strip() == "deleted 0 records"
    assert purged.stdout.strip() == "deleted 1 records", purged.stderr
    assert run_cli(["records", "show", old_job], env).returncode == 5
    assert run_cli(["records", "export"], env).stdout.count("\n") == 2
    stats = run_cli(["records", "stats"], env).stdout.strip()
    assert stats == "records=2 with_feedback=0 wrong=0"
