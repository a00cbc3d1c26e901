#!/usr/bin/env bash
# nginx for tests/test_failover.py (Debian's nginx-light, or nginx where there is no -light).
#
#   nginx.sh install     install it if /usr/sbin/nginx is missing (quick no-op when present);
#                        exits 1 if it cannot, and start-services.sh decides (require.sh: fatal
#                        under CI, a warning and skipped tests locally)
#   nginx.sh run DIR     run nginx in the foreground on DIR/site.conf (an http-level include,
#                        rendered by the test from deploy/nginx/cds-service.conf): writes
#                        DIR/nginx.conf (one worker, pid, logs and temp files under DIR), checks
#                        it (nginx -t), then execs nginx; stop it with SIGQUIT or SIGTERM
#
# Debian's package does not start a server here (policy-rc.d) and the tests never use one: every
# listener is the test's own, on 127.0.0.1.
set -euo pipefail
NGINX=/usr/sbin/nginx

cmd_install() {
    if [[ -x "$NGINX" ]]; then
        echo "nginx.sh: $("$NGINX" -v 2>&1) found"
        return 0
    fi
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
        echo "nginx.sh: nginx is not installed and cannot be installed here (needs root and apt-get)" >&2
        return 1
    fi
    local package=nginx-light
    apt-get update -qq
    # Debian 13 has no nginx-light; its nginx package is the same server.
    apt-cache show nginx-light >/dev/null 2>&1 || package=nginx
    echo "nginx.sh: installing Debian's $package package"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "$package" >/dev/null; then
        echo "nginx.sh: apt-get install $package failed" >&2
        return 1
    fi
    [[ -x "$NGINX" ]] || { echo "nginx.sh: installed, but $NGINX is missing" >&2; return 1; }
    echo "nginx.sh: $("$NGINX" -v 2>&1) installed"
}

cmd_run() {
    local dir="${1:?nginx.sh run needs the folder holding site.conf}" user=""
    [[ -f "$dir/site.conf" ]] || { echo "nginx.sh: no $dir/site.conf" >&2; exit 2; }
    [[ -x "$NGINX" ]] || { echo "nginx.sh: nginx is not installed" >&2; exit 3; }
    mkdir -p "$dir/temp"
    if [[ "$(id -u)" == 0 ]]; then
        # the workers drop to nobody: they write request bodies under temp/ only
        user="user nobody nogroup;"
        chmod 0755 "$dir"
        chown nobody "$dir/temp"
    fi
    cat >"$dir/nginx.conf" <<EOF
$user
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 512; }
http {
    access_log $dir/access.log;
    client_body_temp_path $dir/temp/body;
    proxy_temp_path $dir/temp/proxy;
    fastcgi_temp_path $dir/temp/fastcgi;
    uwsgi_temp_path $dir/temp/uwsgi;
    scgi_temp_path $dir/temp/scgi;
    default_type application/octet-stream;
    include $dir/site.conf;
}
EOF
    "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
    exec "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
}

case "${1:-}" in
    install) cmd_install ;;
    run) shift; cmd_run "$@" ;;
    *) echo "usage: nginx.sh install | run DIR" >&2; exit 2 ;;
esac
