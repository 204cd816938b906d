#!/usr/bin/env bash
# Start/stop a private Docker engine for the judge's docker backend tests (run as root).
#
#   tests/sandbox/docker_env.sh start   # install docker.io if missing, start dockerd, wait
#   tests/sandbox/docker_env.sh stop    # stop the dockerd this script started (by its PID)
#   tests/sandbox/docker_env.sh status  # exit 0 iff `docker info` answers
#
# `start` does nothing if an engine already answers on the default socket. Otherwise it starts
# `dockerd` in the background with its own data root, exec root and pidfile (so it never touches
# a system engine's state), no iptables and no default bridge (the judge's containers use
# network_mode=none), and waits up to DOCKER_ENV_WAIT_S (60) seconds for `docker info`. The
# engine's log goes to $DOCKER_ENV_DIR/dockerd.log. `stop` sends SIGTERM to the PID in the
# pidfile only, waits for it to exit (SIGKILL after 20 s) and removes the pidfile.
# Limits: Debian/Ubuntu (apt-get) for the install; needs root; overlay2 storage (vfs fallback
# when overlay2 cannot start).
set -euo pipefail

DIR="${DOCKER_ENV_DIR:-/run/alphacode-dockerd}"
PIDFILE="$DIR/dockerd.pid"
LOG="$DIR/dockerd.log"
DATA_ROOT="${DOCKER_ENV_DATA_ROOT:-/var/lib/alphacode-docker}"
WAIT_S="${DOCKER_ENV_WAIT_S:-60}"

answers() { docker info >/dev/null 2>&1; }

wait_ready() {
    local pid="$1" deadline=$((SECONDS + WAIT_S))
    while ((SECONDS < deadline)); do
        answers && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

launch() {  # $1 = storage driver
    mkdir -p "$DIR" "$DATA_ROOT"
    rm -f "$PIDFILE"
    nohup dockerd --storage-driver="$1" --iptables=false --ip-masq=false --bridge=none \
        --data-root "$DATA_ROOT" --exec-root "$DIR/exec" --pidfile "$PIDFILE" \
        >>"$LOG" 2>&1 </dev/null &
    local pid=$!
    if wait_ready "$pid"; then
        echo "$pid" >"$PIDFILE.tmp" && mv "$PIDFILE.tmp" "$PIDFILE"
        echo "dockerd ($1) running as pid $pid; log $LOG"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
}

start() {
    if answers; then
        echo "a Docker engine already answers; nothing to start"
        return 0
    fi
    [[ $(id -u) == 0 ]] || { echo "docker_env.sh start needs root" >&2; exit 1; }
    if ! command -v dockerd >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    fi
    launch overlay2 || launch vfs || {
        echo "dockerd did not answer within ${WAIT_S}s; see $LOG:" >&2
        tail -20 "$LOG" >&2
        exit 1
    }
}

stop() {
    [[ -f "$PIDFILE" ]] || { echo "no $PIDFILE: not started by this script"; return 0; }
    local pid
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$PIDFILE"
    echo "dockerd (pid $pid) stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status)
        answers && echo "Docker engine answers" && exit 0
        echo "no Docker engine answers"; exit 1 ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
