"""The runs table on SQLite (embedded mode), in a process of its own on a fresh database: every
order pages through every run once, and the filters and groups answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.stack import ROOT


def test_the_table_works_on_sqlite(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.config.settings.test",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'rlab.sqlite3'}",
           "RLAB_VAR_DIR": str(tmp_path / "var"), "RLAB_RUN_DIR": str(tmp_path / "runs")}
    (tmp_path / "var").mkdir()
    for args in (["manage.py", "migrate", "--verbosity", "0"],
                 ["-m", "tests.webapp.runs_table.sqlite_scenario"]):
        done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
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
