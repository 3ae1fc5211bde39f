#!/bin/sh
# test_rootfs_nonroot.sh: runs a root disk test (argument) as an unprivileged
# user, the way a non-root emberd builds disks: owners, setuid bits, devices
# and xattrs must come out the same. As root it drops to nobody with setpriv
# (util-linux); already unprivileged, it runs the test as is.
set -eu
test="$1"
if [ "$(id -u)" != 0 ]; then
  exec "$test"
fi
if ! command -v setpriv >/dev/null 2>&1; then
  echo "SKIP: setpriv (util-linux) not found, cannot drop privileges"
  exit 77
fi
exec setpriv --reuid=65534 --regid=65534 --clear-groups "$test"
