"""A synthetic-set cache folder that another process is still writing is waited for, never read half-written."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time

from reidplug.reid.data import synthetic

PARAMS = dict(ids=8, cams=2, seed=0, height=32, width=16)

BUILD = """
import sys
from reidplug.reid.data.datasets.synthetic import SyntheticMarket
d = SyntheticMarket(cache_dir=sys.argv[1], ids=8, cams=2, seed=0, height=32, width=16)
print("images", len(d.train) + len(d.query) + len(d.gallery))
"""


def test_a_second_process_waits_for_the_one_generating(tmp_path):
    base = tmp_path / "synthetic"
    base.mkdir()
    folder = base / synthetic.params_key(**PARAMS)
    with open(base / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a generating process holds it
        proc = subprocess.Popen([sys.executable, "-c", BUILD, str(tmp_path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(3.0)
        assert proc.poll() is None, proc.communicate()
        assert not folder.exists()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "waiting for another process to finish generating" in err
    assert synthetic.read_meta(folder)["params"]["ids"] == 8
    assert int(out.split()[-1]) == sum(synthetic.read_meta(folder)["counts"].values()) - _junk(folder)


def _junk(folder):
    return sum(1 for p in folder.rglob("-1_*.jpg"))
