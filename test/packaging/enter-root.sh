#!/bin/sh
# enter-root.sh ROOT COMMAND...: runs COMMAND (same pid) in a new mount namespace whose root is ROOT,
# as on a booted system. Not chroot(2): the kernel refuses user namespaces to a chrooted process,
# and shifterd's helper makes them. ROOT must be a mount point (the test binds it on itself) and
# hold an empty directory .oldroot; what ROOT has mounted (proc, sys, dev) comes along.
set -e
[ $# -ge 2 ] || { echo "usage: enter-root.sh ROOT COMMAND..." >&2; exit 2; }
exec unshare --mount --propagation private -- /bin/sh -c '
  set -e
  cd "$1"
  shift
  pivot_root . .oldroot
  exec /usr/sbin/chroot . /bin/sh -c "umount -l /.oldroot && exec \"\$@\"" sh "$@"
' sh "$@"
