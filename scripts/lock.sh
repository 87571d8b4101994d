#!/usr/bin/env bash
# Refresh requirements.lock: in a fresh virtual environment, install the newest versions that pyproject.toml's
# ranges allow, run the whole test suite there, and write the lock only when every test passes.
# Usage: bash scripts/lock.sh [pytest args]
# The new lock is tested before it is written: the suite's lock check reads it through $HYBRIDSEARCH_LOCK.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/hybridsearch-lock.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$root"
echo "[lock] resolving the newest versions within pyproject.toml's ranges in $work/venv"
HYBRIDSEARCH_VENV="$work/venv" HYBRIDSEARCH_UNLOCKED=1 bash -c 'source scripts/setup.sh all,dev'
{
  echo "# requirements.lock: the exact versions CI tested; install with  pip install -c requirements.lock -e '.[all,dev]'"
  echo "# Written by scripts/lock.sh on $(date -u +%Y-%m-%d) with $("$work/venv/bin/python" --version) on $(uname -sm)."
  echo "# Do not edit by hand: change the ranges in pyproject.toml and run bash scripts/lock.sh."
  # Local version labels (torch 2.13.0+cpu) are dropped: '==2.13.0' accepts the CPU and the CUDA build alike.
  "$work/venv/bin/pip" freeze --all --exclude-editable --disable-pip-version-check | grep -v "^pip==" | sed -e 's/+[A-Za-z0-9.]*$//' | LC_ALL=C sort -f
} > "$work/requirements.lock"
echo "[lock] running the test suite against the new set"
if ! HYBRIDSEARCH_LOCK="$work/requirements.lock" HYBRIDSEARCH_VENV="$work/venv" HYBRIDSEARCH_UNLOCKED=1 \
     bash -c 'source scripts/setup.sh all,dev && python -m pytest -q "$@"' _ "$@"; then
  echo "[lock] the suite failed with the newest versions; requirements.lock is unchanged." >&2
  echo "[lock] bound the package that broke in pyproject.toml (with a comment saying why) and run this again." >&2
  exit 1
fi
cp "$work/requirements.lock" "$root/requirements.lock.tmp"
mv "$root/requirements.lock.tmp" "$root/requirements.lock"
echo "[lock] wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
git --no-pager diff --stat -- requirements.lock || true
