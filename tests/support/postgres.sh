#!/usr/bin/env bash
# A throw-away PostgreSQL server on 127.0.0.1 for tests/test_feedback_postgres.py (Debian packages).
#
#   postgres.sh install            install Debian's postgresql if no server binaries are present
#                                  (quick no-op when they are); exits 1 if it cannot, and
#                                  start-services.sh decides (tests/support/require.sh: fatal
#                                  under CI, a warning and skipped tests locally)
#   postgres.sh start [PORT]       initdb a cluster in a new temp folder, start it on
#                                  127.0.0.1:PORT (default 54329), create database "cds"; prints
#                                  "dir=FOLDER" and "url=postgresql://cds@127.0.0.1:PORT/cds"
#   postgres.sh stop FOLDER        stop that server and delete its folder
#
# The server trusts local connections without a password and listens on 127.0.0.1 only.
set -euo pipefail

find_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/pg_ctl" && -x "$dir/initdb" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

# Run a command as the cluster's owner: initdb and postgres refuse to run as root.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u "$OWNER" -- "$@"
    else
        "$@"
    fi
}

pick_owner() {
    OWNER="$(id -un)"
    if [[ "$(id -u)" == 0 ]]; then
        if id postgres >/dev/null 2>&1; then
            OWNER=postgres
        else
            id cds-pg >/dev/null 2>&1 || useradd --system --no-create-home \
                --shell /usr/sbin/nologin cds-pg
            OWNER=cds-pg
        fi
    fi
}

cmd_install() {
    if find_bindir >/dev/null; then
        echo "postgres.sh: PostgreSQL server found in $(find_bindir)"
        return 0
    fi
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
        echo "postgres.sh: PostgreSQL is not installed and cannot be installed here" \
             "(needs root and apt-get)" >&2
        return 1
    fi
    echo "postgres.sh: installing Debian's postgresql package"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends postgresql >/dev/null; }; then
        echo "postgres.sh: apt-get install postgresql failed" >&2
        return 1
    fi
    # Debian starts a cluster of its own on 5432 when it can; the tests do not use it.
    find_bindir >/dev/null || { echo "postgres.sh: installed, but no server binaries found" >&2; return 1; }
    echo "postgres.sh: installed in $(find_bindir)"
}

cmd_start() {
    local port="${1:-54329}" bindir dir
    bindir="$(find_bindir)" || { echo "postgres.sh: PostgreSQL is not installed" >&2; exit 3; }
    pick_owner
    dir="$(mktemp -d /tmp/cds-pg.XXXXXX)"
    chmod 0755 "$dir"
    mkdir "$dir/data"
    chown -R "$OWNER" "$dir"
    cd "$dir"  # the owner may not be allowed into the caller's folder
    if ! as_owner "$bindir/initdb" -D "$dir/data" --username=cds --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1; then
        echo "postgres.sh: initdb failed: $(tail -n 3 "$dir/initdb.log" | tr '\n' ' ')" >&2
        rm -rf "$dir"
        exit 4
    fi
    if ! as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir" \
            start >/dev/null; then
        echo "postgres.sh: the server did not start: $(tail -n 3 "$dir/server.log" | tr '\n' ' ')" >&2
        rm -rf "$dir"
        exit 5
    fi
    if ! as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U cds cds; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$dir"
        echo "postgres.sh: createdb cds failed" >&2
        exit 6
    fi
    echo "dir=$dir"
    echo "url=postgresql://cds@127.0.0.1:$port/cds"
}

cmd_stop() {
    local dir="${1:?postgres.sh stop needs the folder printed by start}" bindir
    [[ "$dir" == /tmp/cds-pg.* && -d "$dir" ]] || { echo "postgres.sh: no such cluster: $dir" >&2; exit 2; }
    bindir="$(find_bindir)" || exit 3
    OWNER="$(stat -c %U "$dir/data")"
    cd "$dir"
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
        || as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    cd /
    rm -rf "$dir"
}

case "${1:-}" in
    install) cmd_install ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) echo "usage: postgres.sh install | start [PORT] | stop FOLDER" >&2; exit 2 ;;
esac
