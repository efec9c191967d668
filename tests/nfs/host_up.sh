#!/bin/bash
# (Re)start one host of the bed: a UML guest whose kernel process is pid 1 of its own pid
# namespace inside netns $h (so `kill -KILL $(initpid $h)` ends the host and all its processes
# at once), reachable over ssh from netns nfsS. usage: host_up.sh nfsS|nfsA|nfsB
set -eu
. "$(dirname "$0")/env.sh"
h=$1; ip=$(ip_of "$h")
p=$(initpid "$h"); if [ -n "$p" ] && [ -d "/proc/$p" ]; then echo "$h is up ($p)"; exit 0; fi
rm -f "$NB/run/init.$h"
# A multiplexed ssh connection to the host's previous boot is dead: close it first.
ip netns exec nfsS ssh -F "$NB/ssh_config" -O exit "root@$ip" >/dev/null 2>&1 || true
case $h in
  nfsS) tap=tapS; role=server; mem=256M; extra="ubd0=$NB/export.img";;
  *)    tap=tap${h#nfs}; role=client; mem=${NB_CLIENT_MEM:-640M}; extra="";;
esac
ip -n "$h" link show "$tap" >/dev/null 2>&1 || {
  ip -n "$h" tuntap add "$tap" mode tap
  if [ "$h" = nfsS ]; then ip -n nfsS link set "$tap" master br0; else ip -n "$h" link set "$tap" master "br${h#nfs}"; fi
  ip -n "$h" link set "$tap" up
}
args="mem=$mem umid=$h uml_dir=$NB/uml root=/dev/root rootfstype=hostfs rootflags=/ rw
 con0=fd:0,fd:1 con=null ssl=null vec0:transport=tap,ifname=$tap $extra
 init=$NB_HERE/guest-init.sh JD_ROLE=$role JD_HOST=$h JD_IP=$ip NB=$NB NB_MODROOT=$NB_MODROOT
 NB_EXPORT=$NB_EXPORT NB_MNT=$NB_MNT NB_SRV=$(ip_of nfsS) NB_VERS=$NB_VERS NB_LEASE=$NB_LEASE
 NB_NET_CIDR=$NB_NET.0/24"
[ -n "$NB_CLIENT_OPTS" ] && args="$args NB_OPTS=$NB_CLIENT_OPTS"
rm -rf "$NB/uml/$h"
setsid ip netns exec "$h" unshare --pid --fork --mount-proc $UML $args \
  </dev/null >"$NB/run/$h.console" 2>&1 &
up=$!
want=$(readlink -f "$UML_DIR/linux.uml.patched")
for i in $(seq 100); do
  for k in $(cat /proc/$up/task/*/children 2>/dev/null); do
    [ "$(readlink /proc/$k/exe 2>/dev/null)" = "$want" ] && echo "$k" > "$NB/run/init.$h"
  done
  [ -s "$NB/run/init.$h" ] && break
  sleep 0.1
done
[ -s "$NB/run/init.$h" ] || { echo "$h did not start"; tail -5 "$NB/run/$h.console"; exit 1; }
for i in $(seq 120); do
  onhost "$h" true 2>/dev/null && break
  [ -d "/proc/$(initpid "$h")" ] || { echo "$h died while booting"; tail -20 "$NB/run/$h.console"; exit 1; }
  sleep 0.5
done
onhost "$h" true || { echo "$h: no ssh"; tail -20 "$NB/run/$h.console"; exit 1; }
echo "$h: uml pid $(initpid "$h"), $(grep -a "\[$h init\]" "$NB/run/$h.console" | grep -v ready | tail -1)"
