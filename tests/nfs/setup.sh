#!/bin/bash
# The bed: netns nfsS (bridge br0, control address .1, the server guest's tap), nfsA and nfsB
# (each a bridge joining its guest's tap to a veth into br0). Then the server guest (kernel nfsd
# exporting an ext4 disk image) and the two client guests (kernel NFS client, mounted at $NB_MNT).
# Run teardown.sh first if an earlier bed is left. Needs install.sh once.
set -eu
. "$(dirname "$0")/env.sh"
mkdir -p "$NB/run" "$NB/keys" "$NB/uml"
ip netns add nfsS; ip netns add nfsA; ip netns add nfsB
ip -n nfsS link add br0 type bridge
ip -n nfsS addr add $NB_NET.1/24 dev br0
for x in A B; do
  ip link add veth$x type veth peer name sv$x
  ip link set veth$x netns nfs$x; ip link set sv$x netns nfsS
  ip -n nfsS link set sv$x master br0; ip -n nfsS link set sv$x up
  ip -n nfs$x link add br$x type bridge
  ip -n nfs$x link set veth$x master br$x
  ip -n nfs$x link set veth$x up; ip -n nfs$x link set br$x up
done
for h in nfsS nfsA nfsB; do ip -n $h link set lo up; done
ip -n nfsS link set br0 up
[ -f "$NB/keys/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$NB/keys/id_ed25519"
cp "$NB/keys/id_ed25519.pub" "$NB/keys/authorized_keys"
[ -f "$NB/keys/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$NB/keys/ssh_host_ed25519_key"
cat > "$NB/sshd_config" <<CFG
Port 22
HostKey $NB/keys/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile $NB/keys/authorized_keys
StrictModes no
UsePAM no
PidFile /run/sshd.pid
CFG
cat > "$NB/ssh_config" <<CFG
Host *
  IdentityFile $NB/keys/id_ed25519
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
  ConnectTimeout 3
  ServerAliveInterval 5
  ServerAliveCountMax 60
  ControlMaster auto
  ControlPath $NB/run/ssh-%h
  ControlPersist 1800
CFG
if [ ! -f "$NB/export.img" ]; then truncate -s 1G "$NB/export.img"; mkfs.ext4 -q -F "$NB/export.img"; fi
mkdir -p "$NB_EXPORT" "$NB_MNT"
"$NB_HERE/host_up.sh" nfsS
"$NB_HERE/host_up.sh" nfsA
"$NB_HERE/host_up.sh" nfsB
echo "NFS bed up: server nfsS $(ip_of nfsS):$NB_EXPORT (kernel nfsd), clients nfsA, nfsB at $NB_MNT (vers=$NB_VERS)"
