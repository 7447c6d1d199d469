#!/usr/bin/env bash
# Baseline for the e2e bed and the benchmarks: the readiness loop of the
# Kubernetes "Job with Pod-to-Pod Communication" tutorial, restated.
#
# Usage: seed_loop.sh JOB SUBDOMAIN COUNT
#
# Peers are visited in index order 0..COUNT-1. A peer is pinged once by its
# short name JOB-INDEX.SUBDOMAIN (resolved by the libc resolver, which walks
# the resolv.conf search list); while that fails the loop reports it, waits a
# second and pings the same peer again. A peer that answers is reported and the
# loop moves to the next index, never revisiting earlier ones. Exit 0 once the
# last index answered. There is no deadline, as in the tutorial.
#
# Like the tutorial, ping gets no -W, so an unanswered echo costs ping's own
# default wait. Set SEED_PING_WAIT=N to pass -W N instead.
set -u

if [ "$#" -ne 3 ]; then
	echo "usage: $0 JOB SUBDOMAIN COUNT" >&2
	exit 2
fi
job=$1
subdomain=$2
count=$3

wait_opt=()
if [ -n "${SEED_PING_WAIT:-}" ]; then
	wait_opt=(-W "$SEED_PING_WAIT")
fi

index=0
while [ "$index" -lt "$count" ]; do
	peer="$job-$index.$subdomain"
	until ping -c 1 "${wait_opt[@]}" "$peer" >/dev/null 2>&1; do
		echo "no answer from $peer yet; next try in 1 s"
		sleep 1
	done
	echo "reached $peer"
	index=$((index + 1))
done
