# Sourced by the NFS bed scripts (journal-doctor's own fixture, tests/nfs/). A real kernel NFS bed on a machine whose own kernel has no NFS:
# every "host" is a User-Mode Linux guest (Debian sid's user-mode-linux 7.2, a real Linux 7.2
# kernel running as a process) with its own kernel, pid space, hostname, boot_id and network
# stack; the server runs the kernel nfsd, the clients the kernel NFS client.
NB=${NB_STATE:-/tmp/jd-nfsbed}                 # state: keys, logs, pids, the export's disk image
NB_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UML_DIR=${NB_UML:-/opt/uml72}               # unpacked user-mode-linux_7.2um1 (see README)
UML=$UML_DIR/linux                          # wrapper: the binary with a patched ELF interpreter
NB_MODROOT=$UML_DIR/root                    # modprobe -d root: lib/modules -> the package's modules
NB_NET=10.201.0                             # /24; .1 is the control address in netns nfsS
NB_EXPORT=${NB_EXPORT:-/srv/nfsbed}         # exported directory on the server (an ext4 ubd disk)
NB_MNT=${NB_MNT:-/mnt/nfs}                  # where each client mounts it
NB_VERS=${NB_VERS:-3}                       # NFS version the clients mount (3, 4.0, 4.1, 4.2)
NB_CLIENT_OPTS=${NB_CLIENT_OPTS:-}          # extra client mount options (e.g. actimeo=0)
NB_LEASE=${NB_LEASE:-90}                    # nfsd v4 lease time (kernel default 90 s)
ip_of() { case $1 in nfsS) echo $NB_NET.2;; nfsA) echo $NB_NET.11;; nfsB) echo $NB_NET.12;; *) return 1;; esac; }
# pid (root pid namespace) of a host's UML kernel = pid 1 of that host's own pid namespace
initpid() { cat "$NB/run/init.$1" 2>/dev/null || true; }
# run a command on a host (over ssh from netns nfsS); the command line is a shell string there
onhost() { local h=$1; shift; ip netns exec nfsS ssh -F "$NB/ssh_config" "root@$(ip_of "$h")" -- "$@"; }
