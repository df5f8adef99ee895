"""An engine actor's whole process tree is killed, grandchildren included, and waited for."""

import subprocess
import sys
import time

import psutil

from runner.cluster.reaper import kill_tree

SLEEP = "import time; time.sleep(600)"
TREE = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
        f"'import subprocess, sys, time; subprocess.Popen([sys.executable, \"-c\", \"{SLEEP}\"]); time.sleep(600)']); "
        "time.sleep(600)")


def test_a_process_tree_is_gone_when_kill_tree_returns():
    root = subprocess.Popen([sys.executable, "-c", TREE])
    try:
        deadline = time.monotonic() + 60
        while len(psutil.Process(root.pid).children(recursive=True)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # wait for the grandchild to exist: the tree under test is complete
        tree = [root.pid, *(c.pid for c in psutil.Process(root.pid).children(recursive=True))]
        assert len(tree) == 3
        res = kill_tree(root.pid, timeout_s=30)
        assert sorted(res["pids"]) == sorted(tree) and res["survivors"] == []
        for pid in tree[1:]:  # the grandchildren too, which a kill of the root alone leaves running
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        root.kill()
        root.wait(10)
    assert kill_tree(root.pid) == {"pids": [], "survivors": []}  # already gone: no error
