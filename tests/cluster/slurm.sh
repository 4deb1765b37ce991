#!/usr/bin/env bash
# A single-node SLURM cluster (with accounting) for the project's tests, on Debian, as root.
#
#   tests/cluster/slurm.sh up      install what is missing, write the configs, start the daemons,
#                                  wait until the node is idle
#   tests/cluster/slurm.sh down    cancel its jobs, stop exactly the daemons `up` started (by pid)
#   tests/cluster/slurm.sh status  the node's state as sinfo sees it
#
# Daemons start in the order accounting needs: munged, MariaDB (127.0.0.1 only), slurmdbd,
# `sacctmgr add cluster`, slurmctld, slurmd. A daemon that already runs (munged, MariaDB) is
# used as it is and left running by `down`. Pids, logs and spool live in $MLP_SLURM_STATE.
# docs/cluster.md says why each slurm.conf line is there.
set -euo pipefail

STATE=${MLP_SLURM_STATE:-/var/tmp/mlp-slurm}
CLUSTER=mlptest
PARTITION=cpu
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARK="# written by tests/cluster/slurm.sh"
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)

say() { echo "slurm.sh: $*"; }
die() { echo "slurm.sh: error: $*" >&2; exit 1; }

alive() {  # alive NAME: the pid in $STATE/NAME.pid runs and is the program we started
  local f="$STATE/$1.pid" pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ -d /proc/$pid ]] && grep -q -- "$1" "/proc/$pid/cmdline" 2>/dev/null
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: retry COMMAND every 0.2 s
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || return 1
    sleep 0.2
  done
}

install_missing() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_conf() {  # write_conf PATH MODE: stdin -> PATH, refusing to replace a config we did not write
  if [[ -e $1 ]] && ! head -1 "$1" | grep -qF "$MARK"; then
    die "$1 exists and was not written by this script: not replacing a real cluster's config"
  fi
  { echo "$MARK"; cat; } >"$1"
  chmod "$2" "$1"
}

write_configs() {
  mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d"
  local node host
  node=$(slurmd -C | head -1)  # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
  host=$(hostname -s)
  write_conf "$CONF" 644 <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.daemon.pid
SlurmdPidFile=$STATE/slurmd.daemon.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# containers: no cgroups to track or bind tasks with
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# refuse at submission what no node can ever run (else such a job pends forever)
EnforcePartLimits=ALL
# accounting: without it submitit cannot see a killed job and waits forever
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
InactiveLimit=0
# seconds between SIGTERM and SIGKILL (scancel, time limit): time for a clean stop
KillWait=10
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  local pass
  pass=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$pass" >"$STATE/db.pass"
  chmod 600 "$STATE/db.pass"
  write_conf "$DBD_CONF" 600 <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.daemon.pid
LogFile=$STATE/slurmdbd.log
CONF
}

start() {  # start NAME COMMAND...: run COMMAND in its own session, keep its pid in $STATE/NAME.pid
  local name=$1; shift
  setsid "$@" >>"$STATE/$name.out" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already runs: using it"; return
  fi
  [[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
  mkdir -p /run/munge && chown munge:munge /run/munge
  start munged runuser -u munge -- /usr/sbin/munged --foreground --force
  # runuser stays as munged's parent: record munged's own pid for `down`
  wait_for 10 munged test -S /run/munge/munge.socket.2 || die "munged did not start (see $STATE/munged.out)"
  pgrep -P "$(<"$STATE/munged.pid")" -x munged >"$STATE/munged.pid" || true
  wait_for 10 munge sh -c 'munge -n | unmunge' || die "munged does not answer"
}

db() { mariadb --protocol=socket -uroot "$@"; }

start_mariadb() {
  if db -e 'select 1' >/dev/null 2>&1; then
    say "MariaDB already runs: using it"
  else
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    start mariadbd /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306 \
      --log-error="$STATE/mariadbd.err"
    wait_for 60 mariadb db -e 'select 1' || die "MariaDB did not start (see $STATE/mariadbd.err)"
  fi
  db <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$(<"$STATE/db.pass")';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(<"$STATE/db.pass")';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$(<"$STATE/db.pass")';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$(<"$STATE/db.pass")';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
}

node_state() { sinfo -h -N -p "$PARTITION" -o '%T' 2>/dev/null | head -1; }

node_ready() { [[ $(node_state) =~ ^(idle|mixed|allocated)$ ]]; }

up() {
  [[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts system daemons)"
  if alive slurmd && node_ready; then say "already up: node $(node_state)"; return; fi
  mkdir -p "$STATE"
  install_missing
  write_configs
  start_munge
  start_mariadb
  alive slurmdbd || start slurmdbd /usr/sbin/slurmdbd -D
  wait_for 30 slurmdbd sacctmgr -n show cluster || die "slurmdbd does not answer (see $STATE/slurmdbd.log)"
  if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
  alive slurmctld || start slurmctld /usr/sbin/slurmctld -D -c
  wait_for 30 slurmctld scontrol ping || die "slurmctld does not answer (see $STATE/slurmctld.log)"
  alive slurmd || start slurmd /usr/sbin/slurmd -D -c
  if ! wait_for 60 node node_ready; then
    scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
    wait_for 10 node node_ready || die "node not idle: $(node_state) (see $STATE/slurmd.log)"
  fi
  say "up: partition $PARTITION, node $(hostname -s) $(node_state), $(sinfo -h -o '%c' | head -1) CPUs"
}

stop() {  # stop NAME: SIGTERM the pid we started, SIGKILL after 15 s
  alive "$1" || { rm -f "$STATE/$1.pid"; return 0; }
  local pid; pid=$(<"$STATE/$1.pid")
  kill -TERM "$pid" 2>/dev/null || true
  local end=$((SECONDS + 15))
  while [[ -d /proc/$pid ]] && ((SECONDS < end)); do sleep 0.2; done
  [[ -d /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null
  rm -f "$STATE/$1.pid"
  say "stopped $1 ($pid)"
}

down() {
  if alive slurmctld; then
    local jobs
    mapfile -t jobs < <(squeue -h -o %i 2>/dev/null)
    if ((${#jobs[@]})); then
      scancel "${jobs[@]}" || true
      wait_for 30 jobs sh -c '[ -z "$(squeue -h -o %i)" ]' || say "warning: jobs still listed"
    fi
  fi
  local d
  for d in slurmd slurmctld slurmdbd mariadbd munged; do stop "$d"; done
  local f
  for f in "$CONF" "$DBD_CONF"; do
    [[ -e $f ]] && head -1 "$f" | grep -qF "$MARK" && rm -f "$f"
  done
  return 0
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) node_state || true ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
