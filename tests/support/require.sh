# Sourced by tests/support/*.sh: the shell side of tests/support/services.py (same CI rule).
#
#   source "$(dirname "$0")/require.sh"
#   some_install || service_missing NAME "what failed" "how to install it"
#
# service_missing prints one line to stderr; under CI (CI set to anything but empty/0/false/no)
# it returns 1, so a failed install fails `make test` instead of turning into skipped tests;
# locally it returns 0 (the tests that need the service then skip and say how to install it).

in_ci() {
    case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
        "" | 0 | false | no) return 1 ;;
        *) return 0 ;;
    esac
}

service_missing() {
    local name="$1" reason="$2" how="$3"
    if in_ci; then
        echo "error: $name is required under CI but unusable: $reason (install: $how)" >&2
        return 1
    fi
    echo "warning: $name unusable: $reason; its tests will be skipped (install: $how)" >&2
    return 0
}
