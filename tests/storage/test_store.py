"""The blob store on both backends (a local directory; moto's S3 server over HTTP): whole-or-nothing
writes, multipart uploads, seekable ranged reads, owner records, release, the sweeper and the check."""

from __future__ import annotations

import io
import os
import random
import time
import zipfile
from pathlib import Path

import pytest

from tingyin.errors import InvalidRequest, NotFound
from tingyin.jobs.service import (
    cancel_job,
    claim_job,
    delete_finished_job,
    finish_job,
    get_job,
    input_key,
    new_job_id,
    submit_job,
)
from tingyin.store.blobs import PART_BYTES, Owner, StoredBlob, blob_store


def test_writes_are_whole_or_nothing_and_reads_seek(any_store: str) -> None:
    store = blob_store()
    assert store.url.startswith("s3://" if any_store else "file://")
    store.ping()
    rng = random.Random(7)
    for size in (0, 1, 70_000, 2 * PART_BYTES + 12_345):  # the last one is a three-part multipart upload
        payload = rng.randbytes(size)
        key = Owner.job("j1").key(f"object-{size}")
        with store.writer(key) as writer:
            for start in range(0, size, 1_000_003):
                writer.write(payload[start : start + 1_000_003])
        assert store.size(key) == size
        with store.open(key) as stream:
            assert stream.read() == payload
            for _ in range(20):
                position = rng.randrange(0, size + 1)
                length = rng.randrange(0, 3 * 1024 * 1024)
                stream.seek(position)
                assert stream.read(length) == payload[position : position + length]
            if size >= 3:
                stream.seek(-3, io.SEEK_END)
                assert stream.read() == payload[-3:]
    # An aborted write, small or multipart, leaves neither an object nor an unfinished upload.
    for size in (10, PART_BYTES + 1):
        writer = store.writer(Owner.job("j1").key("aborted"))
        writer.write(b"x" * size)
        writer.abort()
        assert not store.exists(writer.key)
    assert store.backend.pending_uploads() == []
    with pytest.raises(NotFound), store.open(Owner.job("j1").key("never-written")):
        pass
    with pytest.raises(InvalidRequest):
        store.writer("jobs/../../etc/passwd")


def test_zip_archives_are_read_in_place(any_store: str) -> None:
    store = blob_store()
    members = {f"cls_{i % 3}/{i}.bin": random.Random(i).randbytes(50_000 + i) for i in range(40)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    key = store.put_bytes(Owner.job("z").key("dataset.zip"), buffer.getvalue()).key
    with store.open(key) as stream, zipfile.ZipFile(stream) as archive:
        assert {info.filename: archive.read(info) for info in archive.infolist()} == members


def test_owners_release_sweep_and_check(any_store: str) -> None:
    store = blob_store()
    # A job owns its upload from the transaction that creates it (a dataset import: a transcription keeps
    # its audio until it is purged, see test_lifetimes).
    job_id = new_job_id()
    upload = store.put_bytes(input_key(job_id), b"audio bytes")
    submit_job(
        "dataset_import",
        {"dataset_id": 1, "blob": upload.key},
        job_id=job_id,
        dispatch=False,
        inputs=[upload],
    )
    # A dataset that does not exist (deleted while its sweeper was down) still has records.
    gone = Owner.dataset(424242)
    store.record_now(gone, [store.put_bytes(gone.key("clip.wav"), b"c" * 100)])
    # Written, never recorded (a crash between the two), and a record whose object vanished.
    orphan = store.put_bytes(Owner.job(new_job_id()).key("input"), b"o" * 50)
    missing_owner = Owner.job(new_job_id())
    submit_job(
        "transcription",
        {},
        job_id=missing_owner.id,
        dispatch=False,
        inputs=[StoredBlob(missing_owner.key("input"), 7)],
    )
    # Outside the owner prefixes: never ours to judge.
    with store.backend.writer("elsewhere/keep.txt") as foreign:
        foreign.write(b"not ours")

    report = store.check()
    assert report["owners"]["job"] == {"objects": 2, "bytes": len(b"audio bytes") + 7}
    assert report["owners"]["dataset"] == {"objects": 1, "bytes": 100}
    assert report["unrecorded_recent"]["keys"] == [orphan.key]  # younger than the grace period
    assert report["orphans"]["objects"] == 0
    assert report["ownerless_records"]["keys"] == [gone.key("clip.wav")]
    assert report["missing_objects"]["keys"] == [missing_owner.key("input")]
    assert report["foreign_objects"]["keys"] == ["elsewhere/keep.txt"]

    swept = store.sweep(list_objects=True, grace_s=0)
    assert swept.released_owners == 1 and swept.orphans_deleted == 1 and swept.orphan_bytes == 50
    assert (
        store.exists(upload.key) and not store.exists(orphan.key) and not store.exists(gone.key("clip.wav"))
    )
    assert store.backend.size("elsewhere/keep.txt") == 8

    # The job ends (here: cancelled while queued): its upload goes at once.
    assert cancel_job(job_id).status == "cancelled"
    assert not store.exists(upload.key)
    after = store.check()
    assert after["owners"]["job"]["objects"] == 1  # the record of the missing object, until its job ends
    assert after["owners"]["dataset"]["objects"] == 0 and after["orphans"]["objects"] == 0


def test_only_a_succeeded_job_that_keeps_its_inputs_keeps_them_until_it_is_deleted(any_store: str) -> None:
    store = blob_store()

    def job_with_upload(*, keep: bool) -> tuple[str, StoredBlob]:
        job_id = new_job_id()
        upload = store.put_bytes(input_key(job_id), b"audio")
        submit_job("transcription", {}, job_id=job_id, dispatch=False, inputs=[upload], keep_inputs=keep)
        return job_id, upload

    def succeed(job_id: str) -> None:
        assert claim_job(job_id, "worker").outcome == "claimed"
        assert finish_job(job_id, "worker", result={"text": "hi"})

    kept, kept_upload = job_with_upload(keep=True)  # a native transcription: played beside its transcript
    succeed(kept)
    assert store.exists(kept_upload.key)
    once, once_upload = job_with_upload(keep=False)  # a Qiniu request's audio: nothing plays it back
    succeed(once)
    assert not store.exists(once_upload.key) and get_job(once).status == "succeeded"
    cancelled, cancelled_upload = job_with_upload(keep=True)  # no transcript to play it beside
    assert cancel_job(cancelled).status == "cancelled"
    assert not store.exists(cancelled_upload.key)
    assert store.sweep(list_objects=True, grace_s=0).orphans_deleted == 0  # the sweeper agrees
    assert store.exists(kept_upload.key)

    # Deleting a finished job takes what it kept at once; a queued one is cancelled instead.
    assert delete_finished_job(kept).status == "succeeded"
    assert not store.exists(kept_upload.key)
    with pytest.raises(NotFound):
        get_job(kept)
    queued, queued_upload = job_with_upload(keep=True)
    assert delete_finished_job(queued).status == "cancelled" and get_job(queued).status == "cancelled"
    assert not store.exists(queued_upload.key)


def test_a_job_that_cannot_be_created_leaves_no_upload(any_store: str) -> None:
    store = blob_store()
    job_id = new_job_id()
    upload = store.put_bytes(input_key(job_id), b"x" * 10)
    with pytest.raises(InvalidRequest):
        submit_job("no_such_kind", {}, job_id=job_id, dispatch=False, inputs=[upload])
    assert not store.exists(upload.key)
    assert store.check()["owners"]["job"]["objects"] == 0


def test_scratch_is_swept_of_what_crashed_processes_left(home: Path) -> None:
    store = blob_store()
    with store.scratch.file() as in_flight:
        in_flight.write_bytes(b"a request being answered")
        stale = store.scratch.root / "requests" / "left-by-a-crash"
        stale.write_bytes(b"old")
        two_hours_ago = time.time() - 7200
        os.utime(stale, (two_hours_ago, two_hours_ago))
        ended = store.scratch.job_dir(new_job_id())  # no such job: it ended and was purged
        (ended / "download").write_bytes(b"audio")
        assert store.sweep(list_objects=False, grace_s=600).scratch_removed == 2
        assert in_flight.exists() and not stale.exists() and not ended.exists()
    assert store.scratch.usage() == (0, 0)


def test_clips_recorded_by_an_import_job_pass_to_the_dataset(any_store: str) -> None:
    store = blob_store()
    job, dataset = Owner.job(new_job_id()), Owner.dataset(7)
    kept = store.put_bytes(dataset.key("a.wav"), b"a" * 10)
    dropped = store.put_bytes(dataset.key("b.wav"), b"b" * 20)
    store.record_now(job, [kept, dropped])  # written during the import, owned by its job
    store.record_now(dataset, [kept])  # the import's commit hands over what it added
    assert store.release(job) == 1  # the job ends: what it still owns goes
    assert store.exists(kept.key) and not store.exists(dropped.key)
    assert store.check()["owners"]["dataset"] == {"objects": 1, "bytes": 10}
