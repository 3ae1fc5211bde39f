#!/bin/sh
# ember Linux test guest: /init (PID 1) of the busybox initramfs built by build.sh.
# Contract (test/guests/linux/README.md): mounts proc, sys, devtmpfs, tmpfs /tmp; loads the
# virtio modules shipped in /lib/modules (best effort); prints EMBER-GUEST-READY on the
# console (ttyS0) once userspace is up, then `ember-heartbeat <n>` every second; runs a
# respawning, echo-less, prompt-less busybox shell on /dev/ttyS1 for host tests.
# PID 1 must never exit (the kernel would panic), so the heartbeat loop runs forever.
export PATH=/bin:/sbin

if [ "${1:-}" = ctlshell ]; then
	while :; do
		# (Re)open ttyS1 each time: when a shell (session leader of ttyS1) exits, the
		# kernel hangs the tty up and the old descriptor is dead.
		exec 3<>/dev/ttyS1
		stty -echo -onlcr <&3
		cd /
		PS1='' PS2='' HOME=/ TERM=dumb setsid -c sh -i <&3 >&3 2>&3
		exec 3>&-
		sleep 0.2
	done
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
# The kernel opened /dev/console from the initramfs (if the builder could mknod it);
# reopen it from devtmpfs so init always has the console (ttyS0) as stdout.
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /run
mount -t tmpfs tmpfs /run
hostname ember-guest

# Kernel modules, in dependency order (list written by build.sh). Failures are ignored:
# a missing device or an already built-in driver must not stop the guest.
if [ -f /lib/modules/load-order ]; then
	while read -r mod; do
		[ -n "$mod" ] && insmod "/lib/modules/$mod" 2>/dev/null
	done < /lib/modules/load-order
fi
ip link set lo up 2>/dev/null

# Control shell on ttyS1, respawned when it exits (`exit` hangs the tty up: input
# queued behind it is lost). The shell is an
# interactive ash (a syntax error does not kill it) in its own session with ttyS1 as
# controlling tty (so a host can interrupt a command with ^C). The tty does not echo
# (and with ECHO off ash skips line editing), PS1/PS2 are empty and output has no CR, so
# what the host reads back is the commands' output (plus ash's banner when a shell
# starts: hosts should synchronise with a marker, see guest_shell.py).
# start-stop-daemon, not `( ... ) &`: an async list of a non-interactive shell starts
# with SIGINT/SIGQUIT ignored, which the control shell's commands would inherit (then ^C
# from the host could not stop a hung command).
if [ -c /dev/ttyS1 ]; then
	start-stop-daemon -S -b -m -p /run/ctlshell.pid -x /bin/sh -- /init ctlshell
fi

echo EMBER-GUEST-READY
n=0
while :; do
	sleep 1
	n=$((n + 1))
	echo "ember-heartbeat $n"
done
