"""Atomic file output: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written file, and an interrupted write leaves the old file intact.
A new file gets the permissions the umask gives (not the temporary file's 0o600); a replaced
file keeps its own.

A temporary file is named after its target, its host and the writing process,
``.<name>.<host>.<pid>.<random>.tmp<suffix>`` (the target's suffix last, so that writers that
pick a format by suffix, given :func:`atomic_path`, still can). A process killed mid-write
(SIGKILL, the out-of-memory killer) cannot remove its own; the next atomic write to the same
target removes those whose process no longer exists on this host, and nothing else. The folder
is listed at a process's first write there and then at most once a minute (temporary names only
are kept), so that writing many files into one folder stays linear in their number.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ase_cartnet.errors import InputError


def ensure_not_input(output: str | os.PathLike, *inputs: str | os.PathLike | None) -> Path:
    """Return ``output`` as a Path; raise ``InputError`` if it is one of ``inputs`` (same file)."""
    out = Path(output)
    for inp in inputs:
        if inp is None:
            continue
        src = Path(inp)
        same = out.resolve() == src.resolve()
        if not same and out.exists() and src.exists():
            same = os.path.samefile(out, src)
        if same:
            raise InputError(
                f"refusing to overwrite the input file {src} with output; choose another path"
            )
    return out


def _umask() -> int:
    """The process umask, read without changing it where Linux exposes it (/proc), else by the
    set-and-restore of ``os.umask``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _creation_mode(target: Path) -> int:
    """Permission bits for the file that replaces ``target``: its own when it exists (a rewrite
    keeps them), else what ``open`` would give a new file (0o666 less the umask), not the
    0o600 of a temporary file."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie, killed but not yet waited for,
    counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:  # Linux: a zombie still answers kill(pid, 0)
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def host_tag() -> str:
    """Six hex digits naming this host, so that a temporary file is judged by the host that
    wrote it (a pid means nothing on another host sharing the folder)."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{host_tag()}.{os.getpid()}."


def _make_temp(target: Path, suffix: str = "") -> tuple[int, str]:
    """``mkstemp`` beside ``target`` with the name pattern of the module docstring."""
    return tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp" + suffix, dir=target.parent)


RESCAN_S = 60.0
"""s during which a process reuses its listing of a folder's temporary files."""
_listings: dict[str, tuple[float, list[str]]] = {}
_listings_lock = threading.Lock()


def _temporary_names(folder: Path, rescan: bool) -> list[str]:
    """Hidden ``*.tmp*`` names in ``folder``: listed afresh when ``rescan`` or after
    ``RESCAN_S``, else from this process's last listing."""
    key = os.path.abspath(folder)
    now = time.monotonic()
    with _listings_lock:
        cached = _listings.get(key)
        if rescan or cached is None or now - cached[0] > RESCAN_S:
            names = [n for n in os.listdir(folder) if n.startswith(".") and ".tmp" in n]
            cached = _listings[key] = (now, names)
        return list(cached[1])


def remove_stale_temporaries(path: str | os.PathLike, rescan: bool = True) -> list[Path]:
    """Remove the temporary files of atomic writes to ``path`` whose writer was killed: names
    that match the exact pattern for this target and this host, with a pid that no longer
    exists. Returns the removed paths. A live writer's file, another host's file and any
    other name are left alone. ``rescan=False`` uses this process's listing of the folder
    when it is under ``RESCAN_S`` old."""
    target = Path(path)
    suffix = re.escape(target.suffix) if target.suffix else ""
    pattern = re.compile(
        rf"\.{re.escape(target.name)}\.{host_tag()}\.(\d+)\.[a-z0-9_]{{8}}\.tmp(?:{suffix})?"
    )
    try:
        names = _temporary_names(target.parent, rescan)
    except OSError:
        return []
    removed = []
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or int(match[1]) == os.getpid() or process_alive(int(match[1])):
            continue
        stale = target.parent / name
        with contextlib.suppress(OSError):  # best effort: a write never fails for this
            if stale.is_file() and not stale.is_symlink():
                os.unlink(stale)
                removed.append(stale)
    if removed:
        with _listings_lock:
            cached = _listings.get(os.path.abspath(target.parent))
            if cached is not None:
                gone = {p.name for p in removed}
                _listings[os.path.abspath(target.parent)] = (
                    cached[0], [n for n in cached[1] if n not in gone],
                )  # fmt: skip
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success rename it to ``path`` (atomic on POSIX).

    ``mode`` is "w" (text) or "wb" (binary). On an exception the temporary file is removed and
    ``path`` is left as it was; after a successful write, killed writers' temporary files of
    ``path`` are removed (:func:`remove_stale_temporaries`).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports modes 'w' and 'wb', not {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for writers that want a file name (matplotlib,
    torch.save, ase.io.write); it is renamed to ``path`` on success and removed on failure
    (then killed writers' temporary files of ``path`` are removed, as by :func:`atomic_write`).
    The temporary name ends in the target's suffix."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = _make_temp(target, target.suffix)
    os.close(fd)
    try:
        yield Path(tmp_name)
        os.chmod(tmp_name, _creation_mode(target))
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    remove_stale_temporaries(target, rescan=False)


def check_output(path: str | os.PathLike, what: str = "output") -> Path:
    """``path`` as a Path once it is known that a file can be written there, before anything is
    computed: an ``InputError`` naming it when it is a folder, an existing non-regular file
    (FIFO, device, symbolic link: never replaced), or in a folder that cannot be written (read
    only, missing permission, a file where a folder should be). Probed by creating and removing
    a temporary file, so a read-only file system is found even for root."""
    out = Path(path)
    if out.is_symlink() or (out.exists() and not out.is_file()):
        kind = (
            "a folder"
            if out.is_dir() and not out.is_symlink()
            else "not a regular file (a link, FIFO or device)"
        )
        raise InputError(f"{what} {out} is {kind}: give the name of a file to write")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:  # created when the file is written
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {what} {out}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write {what} {out}: {exc.strerror} ({folder})") from exc
    os.close(fd)
    os.unlink(probe)
    return out


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` as a Path once it is known to be (or to be creatable as) a writable folder; an
    ``InputError`` naming it otherwise (see :func:`check_output`)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{what} {folder} exists and is not a folder")
    check_output(folder / "summary.csv", what)
    return folder
