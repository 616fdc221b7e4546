#!/usr/bin/env bash
# Start the single-node SLURM test cluster: munged, MariaDB (127.0.0.1), slurmdbd, slurmctld, slurmd.
#
# Idempotent: each daemon is started only when it is not already running (checked through its pid file),
# then the script waits until `sinfo` shows the node idle and `sacct` answers.  Run as root, after
# slurm/install_test_cluster.sh.  State, logs and pid files live in $JD_SLURM_STATE (default
# /var/lib/jumpdenoise-slurm); the rendered configuration goes to /etc/slurm (where every slurm client
# looks for it).  Stop with slurm/stop_test_cluster.sh.
#
# Environment: JD_SLURM_STATE (state folder), JD_SLURM_CPUS (default: nproc),
# JD_SLURM_MEMORY_MB (default: 95 % of the total memory), JD_SLURM_DB_PORT (default 3307),
# JD_SLURM_WAIT_S (seconds to wait for the node, default 120).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEMPLATES="$HERE/test-cluster"
STATE="${JD_SLURM_STATE:-/var/lib/jumpdenoise-slurm}"
HOST="$(hostname -s)"
CPUS="${JD_SLURM_CPUS:-$(nproc)}"
TOTAL_MB="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
MEMORY_MB="${JD_SLURM_MEMORY_MB:-$((TOTAL_MB * 95 / 100))}"
DB_PORT="${JD_SLURM_DB_PORT:-3307}"
DB_PASS="jumpdenoise-test-only"
WAIT_S="${JD_SLURM_WAIT_S:-120}"
CLUSTER="jumpdenoise"
MYSQL_RUN="$STATE/mysql-run"

log() { echo "start_test_cluster: $*"; }
die() { echo "start_test_cluster: ERROR: $*" >&2; exit 1; }

for bin in munged mariadbd slurmdbd slurmctld slurmd sinfo sacct sacctmgr; do
    command -v "$bin" >/dev/null 2>&1 || die "$bin not found; run slurm/install_test_cluster.sh first"
done
[ "$(id -u)" -eq 0 ] || die "must run as root (the daemons of the test cluster run as root)"

# True when the pid file $1 names a live process.
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

render() {  # render TEMPLATE DEST MODE: substitute @VARS@, install only when the content changed
    local tmp
    tmp="$(mktemp)"
    sed -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" \
        -e "s|@CPUS@|$CPUS|g" -e "s|@MEMORY_MB@|$MEMORY_MB|g" -e "s|@DB_PORT@|$DB_PORT|g" \
        -e "s|@DB_PASS@|$DB_PASS|g" "$1" > "$tmp"
    if ! cmp -s "$tmp" "$2"; then
        install -m "$3" "$tmp" "$2"
        CONFIG_CHANGED=1
    fi
    rm -f "$tmp"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds="$1" what="$2"
    shift 2
    for _ in $(seq "$seconds"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    die "timed out after ${seconds}s waiting for $what (logs in $STATE/log)"
}

mkdir -p "$STATE"/{ctld,slurmd,run,log} "$MYSQL_RUN" /etc/slurm
chmod 755 "$STATE"
chown mysql:mysql "$MYSQL_RUN"

CONFIG_CHANGED=0
render "$TEMPLATES/slurm.conf.in" /etc/slurm/slurm.conf 644
render "$TEMPLATES/slurmdbd.conf.in" /etc/slurm/slurmdbd.conf 600
render "$TEMPLATES/mariadb.cnf.in" "$STATE/mariadb.cnf" 644

# 1. munge (authentication between slurm daemons and clients)
MUNGE_PID=/run/munge/munged.pid
if running "$MUNGE_PID"; then
    log "munged already running"
else
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID"
    log "munged started"
fi
wait_for 30 "munge" bash -c "munge -n | unmunge"

# 2. MariaDB on 127.0.0.1:$DB_PORT, data in $STATE/mysql
MYSQL_PID="$MYSQL_RUN/mysqld.pid"
MYSQL_SOCK="$MYSQL_RUN/mysqld.sock"
if running "$MYSQL_PID"; then
    log "mariadb already running"
else
    if [ ! -d "$STATE/mysql/mysql" ]; then
        mkdir -p "$STATE/mysql"
        chown mysql:mysql "$STATE/mysql"
        mariadb-install-db --defaults-file="$STATE/mariadb.cnf" --user=mysql --datadir="$STATE/mysql" \
            --skip-test-db > "$STATE/log/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
    fi
    setsid nohup mariadbd --defaults-file="$STATE/mariadb.cnf" > "$STATE/log/mariadbd.out" 2>&1 < /dev/null &
    log "mariadb started"
fi
wait_for 60 "mariadb" mariadb-admin --socket="$MYSQL_SOCK" ping
mariadb --socket="$MYSQL_SOCK" -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL

# 3. slurmdbd, then register the cluster
if running "$STATE/run/slurmdbd.pid"; then
    log "slurmdbd already running"
else
    slurmdbd
    log "slurmdbd started"
fi
wait_for 60 "slurmdbd" sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" > /dev/null
    log "cluster $CLUSTER registered in slurmdbd"
fi

# 4. slurmctld and slurmd
if running "$STATE/run/slurmctld.pid"; then
    log "slurmctld already running"
    if [ "$CONFIG_CHANGED" -eq 1 ]; then scontrol reconfigure || true; fi
else
    slurmctld
    log "slurmctld started"
fi
wait_for 60 "slurmctld" scontrol ping
if running "$STATE/run/slurmd.pid"; then
    log "slurmd already running"
else
    slurmd
    log "slurmd started"
fi

# 5. wait for the node and for accounting
node_ready() {
    local state
    state="$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n1)"
    case "$state" in
        idle|mixed|allocated|completing) return 0 ;;
        down*|drain*|*drained*|fail*)
            scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
            return 1 ;;
        *) return 1 ;;
    esac
}
wait_for "$WAIT_S" "node $HOST to become idle" node_ready
wait_for 60 "sacct" sacct -n -X --starttime=now-1minute
log "cluster $CLUSTER up: node $HOST ($CPUS CPUs, ${MEMORY_MB} MB), partition debug, accounting through slurmdbd"
