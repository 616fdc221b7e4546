#!/usr/bin/env bash
# Stop the single-node SLURM test cluster started by slurm/start_test_cluster.sh.
#
# Each daemon is stopped through its pid file (slurmd, slurmctld, slurmdbd, MariaDB, munged, in that
# order); no process is looked up by name.  Idempotent: daemons that are not running are skipped.
# State (accounting database, job state) stays in $JD_SLURM_STATE for the next start.
set -euo pipefail

STATE="${JD_SLURM_STATE:-/var/lib/jumpdenoise-slurm}"

stop_pid_file() {  # stop_pid_file NAME PIDFILE
    local name="$1" pid_file="$2" pid
    if [ ! -s "$pid_file" ]; then
        echo "stop_test_cluster: $name not running (no pid file $pid_file)"
        return 0
    fi
    pid="$(cat "$pid_file")"
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "stop_test_cluster: $name not running (stale pid $pid)"
        rm -f "$pid_file"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || { echo "stop_test_cluster: $name stopped"; rm -f "$pid_file"; return 0; }
        sleep 1
    done
    echo "stop_test_cluster: $name (pid $pid) did not stop after 30 s; sending KILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pid_file"
}

stop_pid_file slurmd "$STATE/run/slurmd.pid"
stop_pid_file slurmctld "$STATE/run/slurmctld.pid"
stop_pid_file slurmdbd "$STATE/run/slurmdbd.pid"
stop_pid_file mariadb "$STATE/mysql-run/mysqld.pid"
stop_pid_file munged /run/munge/munged.pid
