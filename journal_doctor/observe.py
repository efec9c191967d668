"""Look at each candidate artifact: lstat, symlink target, journal, filesystem, boot time.

Nothing here follows a lock symlink (lstat and readlink only) or opens anything that might
block: the journal is opened only after its type was checked to be a regular file, and then
with O_NONBLOCK.
"""

from __future__ import annotations

import os
import stat
import time
from functools import cache

from .discover import LeftoverCandidate, LockCandidate
from .model import (
    Filesystem,
    Identity,
    JournalState,
    LockKind,
    LockObservation,
)

# Filesystems where the lock's holder may be a process on another host, invisible from here.
# Cluster filesystems on shared block devices (gfs2, ocfs2) and host shares into VMs (9p,
# virtiofs, vboxsf) belong here for the same reason.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "smb2",
        "ncpfs",
        "afs",
        "coda",
        "lustre",
        "gpfs",
        "beegfs",
        "ceph",
        "cephfs",
        "glusterfs",
        "orangefs",
        "pvfs2",
        "panfs",
        "gfs2",
        "ocfs2",
        "9p",
        "virtiofs",
        "vboxsf",
        "davfs",
        "wekafs",
    }
)
# FUSE filesystems known to be local; any other fuse.* is treated as a network filesystem,
# because unknown must never be judged as if every holder were visible.
LOCAL_FUSE = frozenset({"fuse.overlayfs", "fuse-overlayfs", "fuse.lxcfs", "fuse.portal"})


def is_network_filesystem(fs_type: str) -> bool:
    if fs_type in NETWORK_FILESYSTEMS:
        return True
    return fs_type.startswith("fuse") and fs_type not in LOCAL_FUSE


@cache
def user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


_JOURNAL_PROBE_BYTES = 64


def _journal_state(journal: str) -> JournalState:
    """The file beside a lock: identity, size, whether it looks like a journal, tail health.

    One open and at most two preads. The journal is followed if it is a symlink (a holder has
    the target open, and holders are matched by (device, inode)); it is opened only once stat
    said it is a regular file, with O_NONBLOCK in case it was swapped for a FIFO meanwhile.
    """
    try:
        st = os.lstat(journal)
        alias = None
        if stat.S_ISLNK(st.st_mode):
            st = os.stat(journal)
            alias = os.path.basename(os.path.realpath(journal))
    except OSError:
        return JournalState(exists=False)
    if not stat.S_ISREG(st.st_mode):
        return JournalState(True, st.st_size, st.st_mtime, st.st_dev, st.st_ino, False,
                            "not-a-file", False, alias)  # fmt: skip
    from .integrity import TAIL_PROBE, health_of_tail  # only once a lock was found

    head = tail = b""
    try:
        fd = os.open(journal, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            tail = os.pread(fd, TAIL_PROBE, max(0, st.st_size - TAIL_PROBE))
            head = tail if st.st_size <= TAIL_PROBE else os.pread(fd, _JOURNAL_PROBE_BYTES, 0)
        finally:
            os.close(fd)
        health = health_of_tail(tail, st.st_size)
    except OSError:
        health = "unreadable"
    stripped = head[:_JOURNAL_PROBE_BYTES].lstrip(b" \t\r\n")
    # JSON lines start with "{"; a power loss can leave NULs where the first write should be.
    # This keeps `poetry.lock`, `.git/index.lock` and friends out of the report.
    looks = health != "unreadable" and (not stripped or stripped[:1] in (b"{", b"\x00"))
    return JournalState(True, st.st_size, st.st_mtime, st.st_dev, st.st_ino, True, health,
                        looks, alias)  # fmt: skip


class Observer:
    """Inspects artifacts; caches the mount table, boot time and directory identities."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now
        self._mounts: list[tuple[str, str]] | None = None
        self._boot_time: float | None = None
        self._filesystems: dict[str, Filesystem] = {}
        self._directories: dict[str, tuple[int, int]] = {}
        self._by_device: dict[int, Filesystem] | None = None

    @property
    def boot_time(self) -> float:
        if self._boot_time is None:
            import psutil

            self._boot_time = psutil.boot_time()
        return self._boot_time

    def _mount_table(self) -> list[tuple[str, str]]:
        if self._mounts is None:
            import psutil

            mounts = [(p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]
            # Longest mount point first, so the first prefix match is the innermost mount.
            mounts.sort(key=lambda m: len(m[0]), reverse=True)
            self._mounts = mounts
        return self._mounts

    def _filesystems_by_device(self) -> dict[int, Filesystem]:
        """st_dev -> filesystem, from /proc/self/mountinfo: no stat of any mount point (a dead
        NFS server would hang it) and no realpath per lock directory."""
        if self._by_device is None:
            self._by_device = {}
            try:
                with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
                    for line in f:
                        fields = line.split()
                        try:
                            major, minor = fields[2].split(":")
                            fs_type = fields[fields.index("-", 6) + 1]
                        except (IndexError, ValueError):
                            continue
                        device = os.makedev(int(major), int(minor))
                        mountpoint = fields[4].replace("\\040", " ")
                        self._by_device.setdefault(
                            device, Filesystem(fs_type, mountpoint, is_network_filesystem(fs_type))
                        )
            except OSError:
                pass  # not Linux: the mount-point prefix match below serves
        return self._by_device

    def filesystem_of(self, directory: str, device: int | None = None) -> Filesystem:
        if device is not None:
            by_device = self._filesystems_by_device().get(device)
            if by_device is not None:
                return by_device
        real = os.path.realpath(directory)
        found = self._filesystems.get(real)
        if found is None:
            found = Filesystem("unknown", "", network=True)
            for mountpoint, fs_type in self._mount_table():
                prefix = mountpoint.rstrip("/") + "/"
                if real == mountpoint or real.startswith(prefix):
                    found = Filesystem(fs_type, mountpoint, is_network_filesystem(fs_type))
                    break
            self._filesystems[real] = found
        return found

    def directory_key(self, directory: str) -> tuple[int, int]:
        key = self._directories.get(directory)
        if key is None:
            st = os.stat(directory)
            key = (st.st_dev, st.st_ino)
            self._directories[directory] = key
        return key

    def observe_lock(self, candidate: LockCandidate) -> LockObservation | None:
        """None when the artifact vanished or is not an Optuna lock (poetry.lock, ...)."""
        try:
            st = os.lstat(candidate.path)
        except FileNotFoundError:
            return None  # released between discovery and now
        journal = _journal_state(candidate.journal)
        target: str | None = None
        kind: LockKind
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(candidate.path)
            except OSError:
                return None
            # Optuna links `<J>.lock -> J as given`, so the target always ends with J's name.
            if os.path.basename(target) == os.path.basename(candidate.journal):
                kind = LockKind.SYMLINK
            elif journal.looks_like_journal:
                kind = LockKind.OTHER
            else:
                return None
        elif stat.S_ISREG(st.st_mode):
            if st.st_size == 0 and (not journal.exists or journal.looks_like_journal):
                kind = LockKind.FILE
            elif journal.looks_like_journal:
                kind = LockKind.OTHER
            else:
                return None
        elif journal.looks_like_journal:
            kind = LockKind.OTHER
        else:
            return None

        directory = os.path.dirname(candidate.path) or "."
        directory_key = self.directory_key(directory)
        resolved: str | None = None
        dangling = False
        if kind is LockKind.SYMLINK and target is not None:
            resolved = os.path.normpath(os.path.join(directory, target))
            if resolved == os.path.normpath(candidate.journal):
                dangling = not journal.exists  # stat'ed already
            else:
                dangling = not os.path.exists(resolved)
        return LockObservation(
            path=candidate.path,
            journal=candidate.journal,
            root=candidate.root,
            identity=Identity(st.st_dev, st.st_ino, st.st_mtime_ns, kind, target),
            age_seconds=max(0.0, self.now - st.st_mtime),
            owner_uid=st.st_uid,
            owner=user_name(st.st_uid),
            filesystem=self.filesystem_of(directory, directory_key[0]),
            predates_boot=st.st_mtime < self.boot_time,
            dangling=dangling,
            resolved_target=resolved,
            journal_state=journal,
            directory_key=directory_key,
        )

    def leftover_age(self, candidate: LeftoverCandidate) -> tuple[os.stat_result, float] | None:
        try:
            st = os.lstat(candidate.path)
        except FileNotFoundError:
            return None
        # A rename keeps the lock's mtime but sets ctime: a `.rename` made a moment ago by a
        # release in progress must look young, or removing it would crash that worker.
        changed = max(st.st_mtime, st.st_ctime)
        return st, max(0.0, self.now - changed)
