#!/usr/bin/env bash
# Set up (first run: .venv with zgit and its test extras) and run the test suite.
#   scripts/test.sh                         # everything, 2 workers
#   scripts/test.sh tests/test_source.py -x # arguments go to pytest (-n 0: no workers)
#   scripts/test.sh --all-pythons [ARGS]    # the suite on every supported Python (noxfile.py);
#                                           # versions not installed are skipped, saying so
# Exit code is pytest's (nox's with --all-pythons: non-zero when a session failed).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/_venv.sh
source "$here/_venv.sh"
zgit_venv '.[test]'   # also cds to the repository root

# Python writes bytecode as it does for users (a machine may set PYTHONDONTWRITEBYTECODE):
# the suite must hold with __pycache__ appearing in the test repositories.
unset PYTHONDONTWRITEBYTECODE
if [ "${1:-}" = --all-pythons ]; then
    shift
    exec .venv/bin/python -m nox -- "$@"
fi

defaults=(-q -p no:cacheprovider)
if .venv/bin/python -c 'import xdist' 2>/dev/null; then
    defaults+=(-n "${ZGIT_TEST_WORKERS:-2}")
fi
exec .venv/bin/python -m pytest "${defaults[@]}" "$@"
