"""The SDK's on-disk spool: batches come back whole and in order, survive the process, and are
gone once acknowledged."""

from __future__ import annotations

import pytest

from rlab.spool import Spool, spool_root


def test_batches_come_back_in_the_order_they_were_written(tmp_path):
    spool = Spool(tmp_path)
    for number in range(12):
        spool.append("metrics" if number % 3 else "rollouts", f'{{"n": {number}}}'.encode())

    entries = spool.pending()

    assert [spool.read(entry) for entry in entries] == [f'{{"n": {n}}}'.encode()
                                                         for n in range(12)]
    assert [entry.kind for entry in entries][:4] == ["rollouts", "metrics", "metrics",
                                                     "rollouts"]


def test_a_new_process_continues_after_what_the_last_one_left(tmp_path):
    first = Spool(tmp_path)
    first.append("metrics", b"{}")
    first.append("finish", b'{"status": "succeeded"}')

    second = Spool(tmp_path)
    second.append("metrics", b'{"later": true}')

    assert [entry.kind for entry in second.pending()] == ["metrics", "finish", "metrics"]
    assert second.read(second.pending()[-1]) == b'{"later": true}'


def test_a_batch_half_written_by_a_crash_is_never_sent_and_is_removed(tmp_path):
    Spool(tmp_path).append("metrics", b'{"whole": true}')
    (tmp_path / "000000002.metrics.json.tmp").write_bytes(b'{"series": [{"key": "lo')

    spool = Spool(tmp_path)

    assert [spool.read(entry) for entry in spool.pending()] == [b'{"whole": true}']
    assert sorted(path.name for path in tmp_path.iterdir()) == ["000000001.metrics.json"]


def test_a_damaged_batch_is_set_aside_and_not_sent(tmp_path):
    spool = Spool(tmp_path)
    entry = spool.append("metrics", b"{}")
    entry.path.write_bytes(b'{"series": [')

    assert spool.read(entry) is None
    assert spool.pending() == []
    assert (tmp_path / "000000001.metrics.json.corrupt").exists()


def test_an_acknowledged_batch_is_deleted(tmp_path):
    spool = Spool(tmp_path)
    first = spool.append("metrics", b"{}")
    spool.append("metrics", b"{}")

    spool.ack(first)

    assert [entry.number for entry in spool.pending()] == [2]
    assert len(spool) == 1


def test_the_spool_lives_where_rlab_spool_dir_says(tmp_path, monkeypatch):
    monkeypatch.setenv("RLAB_SPOOL_DIR", str(tmp_path / "spool"))

    assert Spool.for_run(12).directory == tmp_path / "spool" / "12"


@pytest.mark.parametrize("cache", ["", "/var/cache/me"])
def test_the_spool_defaults_to_the_users_cache(monkeypatch, cache, tmp_path):
    monkeypatch.delenv("RLAB_SPOOL_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if cache:
        monkeypatch.setenv("XDG_CACHE_HOME", cache)
    else:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    expected = (cache or str(tmp_path / ".cache")) + "/rlab/spool"
    assert str(spool_root()) == expected
