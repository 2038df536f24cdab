#!/usr/bin/env bash
# Set up (first run: .venv with zgit) and run the end-to-end demo in a temporary repository.
#   scripts/demo.sh           # arguments go to `zgit demo`, e.g. --keep
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/_venv.sh
source "$here/_venv.sh"
zgit_venv '.'   # also cds to the repository root

exec .venv/bin/zgit demo "$@"
