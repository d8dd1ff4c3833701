#!/usr/bin/env bash
# Runs the kansas_zulip tests: creates (or reuses) a virtualenv, installs the package with its
# test extra, and runs pytest on python/tests with the arguments given.
#
#   bash python/test.sh -q
#
# Environment: KANSAS_PYVENV (default <repo>/target/pyvenv), PYTHON (default python3),
# KANSAS_TEST_DATABASE_URL (a PostgreSQL server to use instead of starting one),
# KANSAS_BIN (the kansas binary for the cross-check; default <repo>/target/debug/kansas).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="${KANSAS_PYVENV:-$repo/target/pyvenv}"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "test.sh: $python not found: install python3 (apt-get install python3)" >&2
    exit 1
fi

make_venv() {
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
}

if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ -n "$(ls -A "$venv" 2>/dev/null)" ]; then
    echo "test.sh: $venv exists and is not a virtualenv; remove it or set KANSAS_PYVENV" >&2
    exit 1
fi
if [ ! -f "$venv/pyvenv.cfg" ] || [ ! -x "$venv/bin/python" ] \
    || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    if ! make_venv 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "test.sh: '$python -m venv' failed; installing python3-venv" >&2
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq >/dev/null
            apt-get install -y -qq python3-venv >/dev/null
            make_venv
        else
            echo "test.sh: '$python -m venv' failed: install python3-venv (apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi

stamp="$venv/.kansas-zulip-installed"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    log="$venv/pip-install.log"
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here[test]" >"$log" 2>&1; then
        cat "$log" >&2
        echo "test.sh: pip install -e '$here[test]' failed" >&2
        exit 1
    fi
    touch "$stamp"
fi

cd "$repo"
# The tests directory, unless the arguments name test files or directories themselves.
paths=("$here/tests")
for arg in "$@"; do
    case "$arg" in
        -*) ;;
        *) if [ -e "${arg%%::*}" ]; then paths=(); break; fi ;;
    esac
done
exec "$venv/bin/python" -m pytest "${paths[@]}" "$@"
