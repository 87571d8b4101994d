#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) with hybridsearch and the given extras,
# installing the exact versions in requirements.lock (the set CI tested).
# Usage: source scripts/setup.sh [extras]     (default extras: all,dev)
# Environment:
#   PYTHON=python3.x             the interpreter that creates .venv
#   HYBRIDSEARCH_VENV=DIR        use DIR instead of .venv
#   HYBRIDSEARCH_UNLOCKED=1      ignore the lock and take the newest versions pyproject.toml's ranges allow
#                                (scripts/lock.sh uses this to test a new lock before writing it)
# On machines without an NVIDIA GPU, torch is installed first at the locked version from the CPU wheel
# instead of ~3 GB of CUDA packages.
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_extras="${1:-all,dev}"
_py="${PYTHON:-python3}"
_venv="${HYBRIDSEARCH_VENV:-$_root/.venv}"
_lock="$_root/requirements.lock"
cd "$_root"
if [ "${HYBRIDSEARCH_UNLOCKED:-0}" = 1 ]; then
  _constraints=()
  _mode="unlocked"
else
  _constraints=(-c "$_lock")
  _mode="lock $(sha256sum "$_lock" | cut -c1-16)"
fi
if [ ! -x "$_venv/bin/python" ]; then
  echo "[setup] creating $_venv with $($_py --version 2>&1)"
  "$_py" -m venv "$_venv"
fi
_want="$(sha256sum pyproject.toml | cut -c1-16) extras=$_extras $_mode"
if [ "$(cat "$_venv/.hybridsearch-setup" 2>/dev/null || true)" != "$_want" ]; then
  _torch="$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' "$_lock" | head -n1)"
  _torch="${_torch:-2.13.0}"
  if nvidia-smi -L >/dev/null 2>&1; then
    echo "[setup] NVIDIA GPU found: torch comes from the package index as FlagEmbedding requires it"
  elif ! "$_venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "[setup] no NVIDIA GPU: installing the CPU build torch==$_torch"
    "$_venv/bin/pip" install --quiet --disable-pip-version-check "torch==$_torch"
  fi
  echo "[setup] installing hybridsearch[$_extras] ($_mode; the first run takes a few minutes)"
  "$_venv/bin/pip" install --quiet --disable-pip-version-check "${_constraints[@]}" -e ".[$_extras]"
  echo "$_want" > "$_venv/.hybridsearch-setup"
fi
# Evaluation data: $HYBRIDSEARCH_DATA, or ../shared/data beside the checkout.
if [ -z "${HYBRIDSEARCH_DATA:-}" ] && [ -d "$_root/../shared/data" ]; then
  export HYBRIDSEARCH_DATA="$(cd "$_root/../shared/data" && pwd)"
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export PATH="$_venv/bin:$PATH"
