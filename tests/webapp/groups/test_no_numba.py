import subprocess
import sys


def test_the_statistics_load_no_numba_which_would_stop_vllm_starting_in_the_same_process():
    code = ("import django, os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = "
            "'webapp.config.settings.test'; django.setup(); import webapp.groups.statistics; "
            "print('numba' in sys.modules, 'llvmlite' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[-2:] == ["False", "False"]
