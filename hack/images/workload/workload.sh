#!/bin/sh
# The test workload: a stand-in for a warmed-up inference worker that honours the control-volume
# contract of SPEC §3.
#
# - State lives in memory: a counter, plus WORKLOAD_TOUCH_MIB MiB of touched anonymous memory held
#   by a child process (see below), so a checkpoint must carry every page.
# - Every tick it increments the counter, prints `counter N` on stdout and writes N to
#   $DYN_SNAPSHOT_CONTROL_DIR/counter (write-then-rename; no file stays open across ticks, so a dump
#   never has to carry an fd to it). A restored copy continues from the checkpointed value, which
#   tests read back from that file or from stdout.
# - After WORKLOAD_WARMUP_TICKS ticks it writes `ready-for-snapshot`; when `snapshot-complete`
#   appears it prints `snapshot-complete` and exits 0.
set -eu

dir="${DYN_SNAPSHOT_CONTROL_DIR:-/snapshot-control}"
touch_mib="${WORKLOAD_TOUCH_MIB:-0}"
tick="${WORKLOAD_TICK_SECONDS:-0.2}"
warmup="${WORKLOAD_WARMUP_TICKS:-3}"

# PID 1 in its PID namespace has no default signal actions: without traps StopContainer would
# always wait for SIGKILL.
trap 'echo "terminated at counter ${n:-0}"; exit 143' TERM
trap 'exit 130' INT

publish() { # name value: atomically, so a reader never sees a half-written file
    # A restore elsewhere gets a fresh control directory: a dump taken between the write and the
    # rename restores into a directory without the temporary file. The next tick writes it
    # again, so a failed rename is reported, not fatal (set -e would end the restored workload).
    echo "$2" >"$dir/.$1.tmp" && mv -f "$dir/.$1.tmp" "$dir/$1" ||
        echo "publish $1: not written this tick" >&2
}

# The touched memory is held by a child, part of the container's process tree like the workload
# itself: dd reads WORKLOAD_TOUCH_MIB MiB of /dev/zero into one buffer (the kernel writes every
# page) and then blocks for ever writing it into a pipe that its reader stopped reading after the
# first byte. About 0.5 s a GiB, against 10 s and more for building a shell string that size.
if [ "$touch_mib" -gt 0 ]; then
    rm -f /tmp/.touched
    dd if=/dev/zero bs="${touch_mib}M" count=1 2>/dev/null |
        { head -c 1 >/dev/null && : >/tmp/.touched && exec sleep infinity; } &
    while [ ! -e /tmp/.touched ]; do sleep 0.05; done
    echo "touched $touch_mib MiB"
fi

mkdir -p "$dir"
n=0
while :; do
    n=$((n + 1))
    echo "counter $n"
    publish counter "$n"
    if [ "$n" -eq "$warmup" ]; then
        publish ready-for-snapshot "counter $n"
        echo "ready-for-snapshot"
    fi
    if [ -e "$dir/snapshot-complete" ]; then
        echo "snapshot-complete at counter $n"
        exit 0
    fi
    sleep "$tick"
done
