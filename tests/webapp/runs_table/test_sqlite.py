"""The runs table on SQLite (embedded mode), in a process of its own on a fresh database: every
order pages through every run once, and the filters and groups answer."""

from __future__ import annotations

from tests.stack import sqlite_scenario


def test_the_table_works_on_sqlite(tmp_path):
    found = sqlite_scenario(tmp_path, "tests.webapp.runs_table.sqlite_scenario")
    runs = found["runs"]
    for order, seen in found["walks"].items():
        assert sorted(seen) == sorted(runs), order
    pages = found["pages"]
    assert all(status == 200 for status, _, _ in pages.values()), pages
    assert pages[""][1] == runs[::-1]
    assert pages["sort=metric:last:loss&order=asc"][1][-3:] == [runs[0], runs[4], runs[8]]
    assert sorted(pages["config_key=seed&config_value=1"][1]) == [runs[1], runs[4], runs[7]]
    assert sorted(pages["q=params.seed = 2"][1]) == [runs[2], runs[5], runs[8]]
    assert sorted(pages["metric_key=loss&metric_min=2.5"][1]) == [runs[1], runs[2], runs[5],
                                                                 runs[7]]
    assert "±" in " ".join(pages["group=seed_group"][2])
    assert "±" in " ".join(pages["group=config&group_settings=learning_rate"][2])
