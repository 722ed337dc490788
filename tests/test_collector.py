"""govdb.base.collector: bulk jobs collect less often, and put the collector back as they found it."""

from __future__ import annotations

import gc
import threading

import pytest

from govdb import GovDB
from govdb.base.collector import BULK_THRESHOLDS, bulk_collection


@pytest.fixture(autouse=True)
def _thresholds():  # type: ignore[no-untyped-def]
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_a_job_raises_the_thresholds_and_puts_back_the_ones_it_found_even_on_error() -> None:
    gc.set_threshold(700, 10, 10)
    with pytest.raises(RuntimeError), bulk_collection():
        assert gc.get_threshold() == BULK_THRESHOLDS
        raise RuntimeError("the job failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_an_application_s_higher_thresholds_are_never_lowered() -> None:
    gc.set_threshold(2_000_000, 5, 500)
    with bulk_collection():
        assert gc.get_threshold() == (2_000_000, 20, 500)
    assert gc.get_threshold() == (2_000_000, 5, 500)


def test_overlapping_jobs_in_threads_restore_once_the_last_one_ends() -> None:
    gc.set_threshold(700, 10, 10)
    inside, release = threading.Event(), threading.Event()

    def job() -> None:
        with bulk_collection():
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=job)
    worker.start()
    inside.wait(10)
    with bulk_collection():
        assert gc.get_threshold() == BULK_THRESHOLDS
    assert gc.get_threshold() == BULK_THRESHOLDS  # the thread's job still runs
    release.set()
    worker.join(10)
    assert gc.get_threshold() == (700, 10, 10)


def test_process_and_promote_run_with_the_bulk_thresholds(db: GovDB, monkeypatch: pytest.MonkeyPatch) -> None:
    import govdb.promote as promote
    import govdb.verify.pipeline as pipeline

    gc.set_threshold(700, 10, 10)
    seen: list[tuple[int, int, int]] = []

    def waiting(*_: object, **__: object) -> int:
        seen.append(gc.get_threshold())
        return 0

    def pending(*_: object) -> int:
        seen.append(gc.get_threshold())
        return 0

    monkeypatch.setattr(pipeline, "_waiting", waiting)
    monkeypatch.setattr(promote, "refresh_pending_keys", pending)
    db.process()
    db.promote()
    assert seen == [BULK_THRESHOLDS, BULK_THRESHOLDS]
    assert gc.get_threshold() == (700, 10, 10)
