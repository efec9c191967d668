"""What this host can see of a lock's possible holders, and what it cannot.

A holder is found by looking at this host's processes. That says nothing about processes this
host cannot look at: on other hosts (a network filesystem, or a directory this host exports),
outside this container's pid namespace, or hidden by /proc's hidepid. Each such blind spot is
an `Unseen` on the lock's observation, and the judge then never calls a lock orphaned by the
local rule (fail closed).

Everything is read from files (/proc/self/mountinfo, /proc/self/ns/pid, the export tables):
no mount point is ever stat'ed, so a dead NFS server cannot hang a scan.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..model import Blindness, Filesystem, Unseen

# Filesystems where the lock's holder may be a process on another host, invisible from here.
# Cluster filesystems on shared block devices (gfs2, ocfs2) and host shares into VMs (9p,
# virtiofs, vboxsf) belong here for the same reason.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "smb2", "ncpfs", "afs", "coda", "lustre",
        "gpfs", "beegfs", "ceph", "cephfs", "glusterfs", "orangefs", "pvfs2", "panfs", "gfs2",
        "ocfs2", "9p", "virtiofs", "vboxsf", "davfs", "wekafs",
    }
)  # fmt: skip
# FUSE filesystems known to be local; any other fuse.* (sshfs, s3fs, ...) is treated as a
# network filesystem, because unknown must never be judged as if every holder were visible.
LOCAL_FUSE = frozenset({"fuse.overlayfs", "fuse-overlayfs", "fuse.lxcfs", "fuse.portal"})
# The inode of the initial pid namespace (PROC_PID_INIT_INO in the kernel).
INITIAL_PID_NAMESPACE = 0xEFFFFFFC

# Where servers list what they export. Kernel NFS: the live table, then exportfs's copy.
NFS_EXPORT_TABLES = ("/proc/fs/nfsd/exports", "/var/lib/nfs/etab")
SAMBA_CONFIG = "/etc/samba/smb.conf"
GANESHA_CONFIG = "/etc/ganesha/ganesha.conf"


def is_network_filesystem(fs_type: str) -> bool:
    if fs_type in NETWORK_FILESYSTEMS:
        return True
    return fs_type.startswith("fuse") and fs_type not in LOCAL_FUSE


@dataclass(frozen=True, kw_only=True)
class Export:
    path: str
    server: str  # "kernel NFS", "Samba", "nfs-ganesha"


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.readlines()
    except OSError:
        return []


def _unescape_octal(path: str) -> str:
    """Export tables and mountinfo write a space as \\040."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _nfs_exports() -> Iterator[Export]:
    for table in NFS_EXPORT_TABLES:
        for line in _read_lines(table):
            line = line.strip()
            if line and not line.startswith("#"):
                yield Export(path=_unescape_octal(line.split()[0]), server=f"kernel NFS ({table})")


_SAMBA_PATH = re.compile(r"^\s*path\s*=\s*(.+?)\s*$", re.IGNORECASE)
_GANESHA_PATH = re.compile(r"\bPath\s*=\s*\"?([^\";]+)\"?\s*;", re.IGNORECASE)


def _samba_exports() -> Iterator[Export]:
    for line in _read_lines(SAMBA_CONFIG):
        match = _SAMBA_PATH.match(line)
        if match and not line.lstrip().startswith(("#", ";")):
            yield Export(path=match.group(1), server=f"Samba ({SAMBA_CONFIG})")


def _ganesha_exports() -> Iterator[Export]:
    for line in _read_lines(GANESHA_CONFIG):
        if not line.lstrip().startswith("#"):
            for match in _GANESHA_PATH.finditer(line):
                yield Export(path=match.group(1).strip(), server=f"nfs-ganesha ({GANESHA_CONFIG})")


def exports() -> tuple[Export, ...]:
    """Every directory this host serves to others, longest first."""
    found = {e.path.rstrip("/") or "/": e for e in (*_nfs_exports(), *_samba_exports(),
                                                     *_ganesha_exports())}  # fmt: skip
    return tuple(sorted(found.values(), key=lambda e: len(e.path), reverse=True))


def in_container() -> bool:
    """Does the doctor run in a pid namespace that is not the initial one? Unknown is yes."""
    if not os.path.isdir("/proc"):
        return False  # not Linux: no pid namespaces
    try:
        return os.stat("/proc/self/ns/pid").st_ino != INITIAL_PID_NAMESPACE
    except OSError:
        return True


def other_pid_namespaces() -> bool:
    """Does any process on this host live in a pid namespace below this one (a container)? A
    pid a writer recorded may then be numbered by that namespace. Read from each process's
    `NSpid` (one pid per namespace level; readable without ptrace rights, unlike its ns link,
    which even root may be refused). Unknown is yes: a status that cannot be read counts."""
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
                nested = next((len(line.split()) > 2 for line in f if line.startswith("NSpid:")),
                              None)  # fmt: skip
        except FileNotFoundError:
            continue  # exited meanwhile
        except OSError:
            return True
        if nested is None or nested:
            return True  # no NSpid (a kernel before 4.1): cannot tell
    return False


@dataclass(frozen=True, kw_only=True)
class MountTable:
    by_device: dict[int, Filesystem]
    proc_hides_processes: bool  # /proc mounted with hidepid (other users' processes hidden)


def _mounts() -> Iterator[tuple[int, str, list[str], str]]:
    """(st_dev, type, super options, mount point) of each mount, from /proc/self/mountinfo:
    no stat of any mount point (a dead NFS server would hang it)."""
    for line in _read_lines("/proc/self/mountinfo"):
        fields = line.split()
        try:
            major, minor = fields[2].split(":")
            separator = fields.index("-", 6)
            fs_type, super_options = fields[separator + 1], fields[separator + 3]
        except (IndexError, ValueError):
            continue
        yield os.makedev(int(major), int(minor)), fs_type, super_options.split(","), fields[4]


def read_mount_table() -> MountTable:
    """st_dev -> filesystem, with no realpath per lock directory."""
    by_device: dict[int, Filesystem] = {}
    hides = False
    for device, fs_type, options, mount_point in _mounts():
        by_device.setdefault(
            device, Filesystem(type=fs_type, network=is_network_filesystem(fs_type))
        )
        # The /proc this process reads (the last one mounted there hides those below it)
        if fs_type == "proc" and mount_point == "/proc":
            hides = any(
                option.startswith("hidepid=") and option not in ("hidepid=0", "hidepid=off")
                for option in options
            )
    return MountTable(by_device=by_device, proc_hides_processes=hides)


def locks_stay_local(path: str) -> bool:
    """Are POSIX byte-range locks taken under `path` kept by this client alone? So on NFS
    mounted `nolock` (`local_lock=all` or `posix`): the server never sees them, so they fence
    no other host, and each still costs round trips (the client revalidates a file's
    attributes and access whenever a lock is taken on it: 2 RPCs per append, measured on the
    NFSv3 bed). False wherever that cannot be read: the lock is then taken."""
    try:
        device = os.stat(path).st_dev
    except OSError:
        return False
    for mounted, fs_type, options, _ in _mounts():
        if mounted == device:
            local = ("nolock", "local_lock=all", "local_lock=posix")
            return fs_type.startswith("nfs") and any(option in options for option in local)
    return False


class Sight:
    """This host's blind spots, read once per scan; `unseen(...)` applies them to one lock."""

    def __init__(self, shared: bool = False) -> None:
        self.shared = shared
        self.container = in_container()
        self.mounts = read_mount_table()
        self.exports = exports()
        self._root = hasattr(os, "geteuid") and os.geteuid() == 0

    def filesystem(self, device: int) -> Filesystem:
        # Not in the table (not Linux, or a mount made after the read): fail closed.
        return self.mounts.by_device.get(device, Filesystem(type="unknown", network=True))

    def export_of(self, directory: str) -> Export | None:
        if not self.exports:
            return None
        real = os.path.realpath(directory)
        for export in self.exports:
            if real == export.path or real.startswith(export.path.rstrip("/") + "/"):
                return export
        return None

    def unseen(self, directory: str, filesystem: Filesystem) -> tuple[Unseen, ...]:
        found: list[Unseen] = []
        if filesystem.network:
            found.append(Unseen(blindness=Blindness.NETWORK_FS,
                                sentence=f"it is on a network filesystem ({filesystem.type}),"
                                " where holders on other hosts cannot be seen"))  # fmt: skip
        export = self.export_of(directory)
        if export is not None:
            found.append(Unseen(blindness=Blindness.EXPORTED,
                                sentence=f"this host exports {export.path} ({export.server}), so"
                                " holders on its clients cannot be seen"))  # fmt: skip
        if self.shared and not found:
            found.append(Unseen(blindness=Blindness.SHARED,
                                sentence="--shared says other hosts use it, and their holders"
                                " cannot be seen"))  # fmt: skip
        if self.container:
            found.append(Unseen(blindness=Blindness.CONTAINER,
                                sentence="the doctor runs in a container (its own pid namespace),"
                                " so processes outside it cannot be seen"))  # fmt: skip
        if self.mounts.proc_hides_processes and not self._root:
            found.append(Unseen(blindness=Blindness.HIDDEN_PROCESSES,
                                sentence="/proc is mounted with hidepid, so other users' processes"
                                " cannot be seen"))  # fmt: skip
        return tuple(found)
