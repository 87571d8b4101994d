#!/usr/bin/env bash
# The whole test suite: set up .venv with every extra, then run pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" all,dev
exec python -m pytest "$@"
