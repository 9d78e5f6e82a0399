#!/usr/bin/env bash
# The test command (README, .ci/run): install what the tests need, then run exactly the tests.
#
#   scripts/test.sh                 every test: cargo test --workspace --release --locked
#   scripts/test.sh -p smon-console --test demo     any other cargo test arguments instead
#
# Installing is idempotent (only what is missing, with Debian's apt-get; through sudo when not
# root). When something is missing and cannot be installed, it says what and stops. Run by
# hand without this script, a test that needs a missing tool skips with a line naming it.
set -euo pipefail
cd "$(dirname "$0")/.."

# What each tool is for:
#   tmux                      the TUI end to end, on a real terminal
#   python3                   the example application (assets/apps/hello-http)
#   find, flock, setsid, gzip the local machines' probe, install and start scripts
#   kill, pkill               tests end what they started, by pid (procps)
#   sshd, ssh-keygen, ...     the SSH tests run their own OpenSSH sshd and ssh-agent
#   useradd, usermod          test users for the SSH machines (passwd)
#   tcsh                      an SSH machine whose user's login shell is not sh
#   ip, tc                    network namespaces for the lab tests (iproute2)
#   promtool                  Prometheus' own parser checks the metrics text (prometheus)
#   prometheus_client         the client library's OpenMetrics parser, for Debian's python3
#                             (python3-prometheus-client; scripts/metrics_samples.py)
need=()
add() { case " ${need[*]-} " in *" $1 "*) ;; *) need+=("$1") ;; esac; }
want() { # want TOOL PACKAGE: PACKAGE provides TOOL
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] || add "$2"
}
want tmux tmux
want python3 python3
want find findutils
want flock util-linux
want setsid util-linux
want gzip gzip
want pkill procps
want sshd openssh-server
want ssh-keygen openssh-client
want ssh-agent openssh-client
want ssh-add openssh-client
want useradd passwd
want usermod passwd
want tcsh tcsh
want ip iproute2
want tc iproute2
want hostname hostname
want promtool prometheus
/usr/bin/python3 -c 'import prometheus_client.openmetrics.parser' >/dev/null 2>&1 ||
    add python3-prometheus-client
[ -x /bin/kill ] || [ -x /usr/bin/kill ] || add procps # not the shell's builtin

if [ ${#need[@]} -gt 0 ]; then
    echo "scripts/test.sh: installing ${need[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "scripts/test.sh: the tests need ${need[*]} (Debian packages), and this user can" \
            "neither install them (not root, no password-less sudo) nor run the tests without" \
            "them: run 'sudo apt-get install ${need[*]}' and try again" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "scripts/test.sh: the tests need ${need[*]} and there is no apt-get to install" \
            "them with: install them with this system's package manager and try again" >&2
        exit 1
    fi
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ $# -eq 0 ]; then
    set -- --workspace
fi
exec cargo test --release --locked "$@"
