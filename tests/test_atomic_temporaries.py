"""Temporary files of atomic writes: named after target, host and pid; a killed writer's are
removed by the next write to the same target, nothing else is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ase_cartnet.io.atomic import (
    atomic_path,
    atomic_write,
    host_tag,
    process_alive,
    remove_stale_temporaries,
)

ROOT = Path(__file__).resolve().parents[1]

KILLED_WRITER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from ase_cartnet.io.atomic import atomic_path, atomic_write
if sys.argv[2] == "write":
    with atomic_write(sys.argv[1]) as handle:
        handle.write("half")
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_write(target: Path, how: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER.format(root=str(ROOT)), str(target), how],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr


def hidden(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.name.startswith("."))


@pytest.mark.parametrize("how", ["write", "path"])
def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path, how):
    target = tmp_path / "out.cif"
    target.write_text("old")
    killed_write(target, how)
    killed_write(target, how)
    left = hidden(tmp_path)
    assert len(left) == 2 and target.read_text() == "old"
    assert all(n.startswith(f".out.cif.{host_tag()}.") and n.endswith(".tmp.cif") for n in left)
    with atomic_write(target) as handle:
        handle.write("new")
    assert hidden(tmp_path) == [] and target.read_text() == "new"


def test_live_writers_and_other_names_are_left_alone(tmp_path):
    target = tmp_path / "out.txt"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        tag = host_tag()
        stale = f".out.txt.{tag}.{dead.pid}.abcd_123.tmp"
        keep = [
            f".out.txt.{tag}.{sleeper.pid}.abcd_123.tmp",  # a live writer
            f".out.txt.{tag}.{os.getpid()}.abcd_123.tmp",  # this process
            f".out.txt.000000.{dead.pid}.abcd_123.tmp",  # another host
            f".out.txt2.{tag}.{dead.pid}.abcd_123.tmp",  # another target
            f".out.txt.{tag}.{dead.pid}.abcd_1234.tmp",  # not the pattern
            f".out.txt.{tag}.{dead.pid}.abcd_123.tmp.bak",
            f"out.txt.{tag}.{dead.pid}.abcd_123.tmp",
        ]
        for name in [stale, *keep]:
            (tmp_path / name).write_text("x")
        removed = remove_stale_temporaries(target)
        assert [p.name for p in removed] == [stale]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_atomic_path_keeps_the_suffix_for_format_guessing(tmp_path):
    with atomic_path(tmp_path / "frame.traj") as tmp:
        assert tmp.suffix == ".traj" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "frame.traj").read_bytes() == b"x"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_zombie_counts_as_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.time() + 30
        while time.time() < deadline and process_alive(child.pid):
            time.sleep(0.05)  # exits, and stays a zombie until waited for
        assert not process_alive(child.pid)
    finally:
        child.wait()
    assert process_alive(os.getpid()) and not process_alive(0)


def test_many_writes_into_one_folder_list_it_once_a_minute(tmp_path, monkeypatch):
    """Writing N files into one folder stays linear: the folder is listed once, not per write;
    a temporary left after that listing is found at the next listing."""
    import ase_cartnet.io.atomic as atomic

    listed = []
    real = os.listdir
    monkeypatch.setattr(atomic.os, "listdir", lambda folder: listed.append(folder) or real(folder))
    for k in range(50):
        with atomic_write(tmp_path / f"s{k}.cif") as handle:
            handle.write("x")
    assert len(listed) == 1
    killed_write(tmp_path / "s3.cif", "write")
    with atomic_write(tmp_path / "s3.cif") as handle:
        handle.write("y")
    assert len(hidden(tmp_path)) == 1 and len(listed) == 1  # within the minute: not seen yet
    monkeypatch.setattr(atomic, "RESCAN_S", 0.0)
    with atomic_write(tmp_path / "s3.cif") as handle:
        handle.write("z")
    assert hidden(tmp_path) == [] and len(listed) == 2
