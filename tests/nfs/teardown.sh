#!/bin/bash
# Undo setup.sh: kill each guest's kernel process by its pid (its pid namespace goes with it),
# delete the three netns (taps, bridges and veths go with them). Keeps $NB/keys and export.img
# unless NB_WIPE=1.
. "$(dirname "$0")/env.sh"
for h in nfsS nfsA nfsB; do ip netns exec nfsS ssh -F "$NB/ssh_config" -O exit "root@$(ip_of $h)" 2>/dev/null; done
for h in nfsA nfsB nfsS; do
  p=$(initpid $h); [ -n "$p" ] && [ -d "/proc/$p" ] && kill -KILL "$p"
done
sleep 0.5
for h in nfsA nfsB nfsS; do ip netns del $h 2>/dev/null; done
rm -f "$NB"/run/init.*; rm -rf "$NB/uml"
[ "${NB_WIPE:-0}" = 1 ] && rm -rf "$NB"
echo "nfs bed down"
