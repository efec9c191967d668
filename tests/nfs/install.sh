#!/bin/bash
# One-time install (root, Debian bookworm): nfs-common/nfs-kernel-server userland (used inside the
# guests through hostfs), openssh, and a User-Mode Linux kernel that runs on this host.
# Why not bookworm's user-mode-linux (6.1) or trixie's (6.12): on a host CPU with AMX the host's
# XSAVE area is ~11 KB and those kernels pass a fixed, smaller buffer to PTRACE_SETREGSET, so
# the first guest process dies with "userspace - ptrace set fp regs failed, errno = 14".
# sid's 7.2 sizes it at run time. Its binary needs glibc >= 2.38 (bookworm has 2.36): trixie's
# libc6 is unpacked beside it and the binary's ELF interpreter path is patched to use it.
set -eu
U=${NB_UML:-/opt/uml72}
if [ -x "$U/linux" ] && command -v rpc.nfsd >/dev/null && command -v exportfs >/dev/null; then
  echo "installed already: $U"; exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nfs-kernel-server nfs-common rpcbind \
  openssh-server openssh-client iproute2 kmod e2fsprogs >/dev/null
W=${NB_APT:-/tmp/jd-nfsbed-apt}
mkdir -p $W/lists/partial $W/cache/archives/partial $W/debs
# The machine's own Debian archive (its first non-security URI), with the newer suites.
URI=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
[ -n "$URI" ] || URI=$(awk '/^deb / && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$URI" ] || { echo "install.sh: no Debian archive URI in the apt sources"; exit 1; }
printf 'deb %s trixie main\ndeb %s sid main\n' "$URI" "$URI" > $W/sources.list
A="-o Dir::Etc::SourceList=$W/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$W/lists -o Dir::Cache=$W/cache -o Dir::State::status=/var/lib/dpkg/status"
apt-get $A update -qq
( cd $W/debs && apt-get $A download -qq user-mode-linux/sid libc6/trixie )
G=/opt/glibc-trixie
mkdir -p $U $G /opt/g
dpkg-deb -x $W/debs/user-mode-linux_*.deb $U
dpkg-deb -x $W/debs/libc6_*.deb $G
ln -sf $G/usr/lib64/ld-linux-x86-64.so.2 /opt/g/ld-linux-x86-64.so.2
python3 - "$U" <<'PY'
import sys
src = sys.argv[1] + "/usr/bin/linux.uml"; dst = sys.argv[1] + "/linux.uml.patched"
b = open(src, "rb").read()
old, new = b"/lib64/ld-linux-x86-64.so.2\0", b"/opt/g/ld-linux-x86-64.so.2\0"   # same length
assert len(old) == len(new) and b.count(old) == 1
open(dst, "wb").write(b.replace(old, new))
PY
chmod +x $U/linux.uml.patched
cat > $U/linux <<SH
#!/bin/sh
LD_LIBRARY_PATH=$G/usr/lib/x86_64-linux-gnu exec $U/linux.uml.patched "\$@"
SH
chmod +x $U/linux
mkdir -p $U/root/lib && ln -sfn $U/usr/lib/uml/modules $U/root/lib/modules
echo "installed: $($U/linux --version 2>/dev/null | head -1 || true) at $U"
