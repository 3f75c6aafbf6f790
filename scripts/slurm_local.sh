#!/usr/bin/env bash
# A single-node Slurm on this machine, for the tests marked `slurm` (tests/test_slurm_real.py) and for trying
# `--executor slurm` by hand: munged, slurmctld and slurmd started as plain daemons (no systemd, no cgroups),
# one node with this machine's CPUs and memory, one partition `debug`.
#
#   bash scripts/slurm_local.sh start    # install (Debian: slurm-wlm, munge) if missing, configure, start, wait
#   bash scripts/slurm_local.sh status   # the daemons and `sinfo`
#   bash scripts/slurm_local.sh stop     # stop the daemons this script started (their pid files)
#
# Idempotent: `start` on a running cluster with the same configuration only checks that the node is up.
# Needs root (it writes /etc/slurm/slurm.conf and runs slurmd). State, logs and pid files live under
# $SLURM_LOCAL_DIR (default /var/spool/slurm-local). Accounting (sacct) is used when `slurmdbd` and a MariaDB
# server are installed (SLURM_LOCAL_ACCOUNTING=1 installs them); without it, job states come from squeue and
# scontrol, which mambabench.cluster falls back to.
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-/var/spool/slurm-local}"
CONF=/etc/slurm/slurm.conf
DBDCONF=/etc/slurm/slurmdbd.conf
MARK="# written by mambabench scripts/slurm_local.sh"
NODE=localhost
log() { echo "slurm_local: $*" >&2; }

need_root() {
    if [ "$(id -u)" != 0 ]; then
        log "needs root (writes $CONF, runs slurmd)"
        exit 1
    fi
}

install() {
    local packages=()
    command -v slurmctld >/dev/null || packages+=(slurm-wlm)
    command -v munged >/dev/null || packages+=(munge)
    if [ "${SLURM_LOCAL_ACCOUNTING:-0}" = 1 ]; then
        command -v slurmdbd >/dev/null || packages+=(slurmdbd)
        command -v mariadbd >/dev/null || packages+=(mariadb-server)
    fi
    [ ${#packages[@]} -eq 0 ] && return
    command -v apt-get >/dev/null || { log "no apt-get: install ${packages[*]} by hand"; exit 1; }
    log "installing ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
}

alive() { # alive PIDFILE: the process of a pid file runs
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

accounting() { # accounting is on when slurmdbd and a MariaDB server are installed
    command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null
}

write_config() {
    local mem select storage="accounting_storage/none"
    # RealMemory: what slurmd sees, less 1 GiB for the daemons (a node claiming more than it has is drained)
    mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    mem=$(( ${mem:-2048} > 2048 ? ${mem:-2048} - 1024 : ${mem:-2048} ))
    select=select/cons_tres
    [ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/select_cons_tres.so ] || [ -e /usr/lib/slurm/select_cons_tres.so ] \
        || select=select/cons_res
    accounting && storage="accounting_storage/slurmdbd"
    mkdir -p /etc/slurm "$DIR"/{ctld,d,log,run}
    chown -R slurm:slurm "$DIR"/ctld "$DIR"/log "$DIR"/run 2>/dev/null || true
    cat >"$CONF.new" <<EOF
$MARK
ClusterName=mambabench
SlurmctldHost=$NODE
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no systemd, no cgroups (a container or VM): processes tracked by their parent ids, no CPU binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=$storage
AccountingStorageHost=localhost
JobCompType=jobcomp/none
SelectType=$select
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# a dependent or requeued job is started within a second or two, not at the next minute's scheduling pass
SchedulerParameters=sched_interval=1,bf_interval=1,sched_min_interval=100000,batch_sched_delay=0
# a requeued job waits this long before it may start again (Slurm's default: 120 s)
AuthInfo=cred_expire=5
PreemptType=preempt/none
JobRequeue=1
ReturnToService=2
# a cancelled job gets SIGTERM, then SIGKILL this many seconds later (Slurm's default: 30)
KillWait=1
MinJobAge=600
DefMemPerCPU=2048
MpiDefault=none
NodeName=$NODE NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        log "$CONF exists and is not ours: leaving it (ours is in $CONF.new)"
        return 0
    fi
    if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then
        rm -f "$CONF.new"
        return 0
    fi
    mv "$CONF.new" "$CONF"
    CHANGED=1
}

start_munge() {
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    [ -s /etc/munge/munge.key ] || { command -v mungekey >/dev/null && mungekey -c -f; } \
        || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 0700 /etc/munge /var/lib/munge
    chmod 0400 /etc/munge/munge.key
    chmod 0755 /run/munge
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
    log "starting munged"
    runuser -u munge -- munged --force --pid-file=/run/munge/munged.pid
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.1
    done
    log "munged did not come up"
    exit 1
}

start_accounting() {
    accounting || return 0
    if ! mysqladmin ping >/dev/null 2>&1; then
        log "starting mariadbd"
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
        (mariadbd --user=mysql >"$DIR/log/mariadb.log" 2>&1 &)
        for _ in $(seq 100); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.2; done
    fi
    mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    cat >"$DBDCONF" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chown slurm:slurm "$DBDCONF" && chmod 600 "$DBDCONF"
    if ! alive "$DIR/run/slurmdbd.pid"; then
        log "starting slurmdbd"
        slurmdbd
        for _ in $(seq 100); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
    fi
    sacctmgr -i -n list cluster format=cluster | grep -qw mambabench || sacctmgr -i add cluster mambabench >/dev/null
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1; }

start() {
    need_root
    install
    CHANGED=0
    write_config
    start_munge
    start_accounting
    if [ "$CHANGED" = 1 ] && { alive "$DIR/run/slurmctld.pid" || alive "$DIR/run/slurmd.pid"; }; then
        log "configuration changed: restarting"
        stop_daemons
    fi
    if ! alive "$DIR/run/slurmctld.pid"; then
        log "starting slurmctld"
        slurmctld
    fi
    for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
    if ! alive "$DIR/run/slurmd.pid"; then
        log "starting slurmd"
        slurmd -N "$NODE"
    fi
    local state=""
    for i in $(seq 150); do
        state=$(node_state)
        case "$state" in
            idle* | mixed* | allocated* | completing*) break ;;
            down* | drain* | fail*)
                [ "$i" -gt 10 ] && scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.2
    done
    case "$state" in
        idle* | mixed* | allocated* | completing*) ;;
        *)
            log "node $NODE is '${state:-not known}' (logs: $DIR/log)"
            tail -n 5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
            exit 1
            ;;
    esac
    sinfo
}

stop_one() { # stop_one NAME PIDFILE
    if alive "$2"; then
        log "stopping $1"
        kill "$(cat "$2")"
        for _ in $(seq 50); do alive "$2" || break; sleep 0.2; done
    fi
}

stop_daemons() {
    stop_one slurmd "$DIR/run/slurmd.pid"
    stop_one slurmctld "$DIR/run/slurmctld.pid"
}

stop() {
    stop_daemons
    stop_one slurmdbd "$DIR/run/slurmdbd.pid"
    if accounting && [ -s /run/mysqld/mysqld.pid ] && grep -qF "$MARK" "$DBDCONF" 2>/dev/null; then
        stop_one mariadbd /run/mysqld/mysqld.pid
    fi
    stop_one munged /run/munge/munged.pid
}

status() {
    for name in slurmctld slurmd slurmdbd; do
        if alive "$DIR/run/$name.pid"; then echo "$name: running (pid $(cat "$DIR/run/$name.pid"))"; else echo "$name: stopped"; fi
    done
    if alive /run/munge/munged.pid; then echo "munged: running"; else echo "munged: stopped"; fi
    sinfo 2>/dev/null || { echo "sinfo: controller not reachable"; return 1; }
}

case "${1:-}" in
    start) start ;;
    stop) need_root; stop ;;
    status) status ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
