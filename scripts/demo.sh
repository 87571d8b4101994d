#!/usr/bin/env bash
# The main job: set up .venv, then index SciFact offline and answer queries with hybrid search.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" all
exec hybridsearch demo "$@"
