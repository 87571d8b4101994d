#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) with hybridsearch and the given extras.
# Usage: source scripts/setup.sh [extras]     (default extras: all,dev)
# On machines without an NVIDIA GPU, torch is pinned to 2.13.0 first so pip takes the CPU wheel
# instead of ~3 GB of CUDA packages.
set -euo pipefail
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_extras="${1:-all,dev}"
_py="${PYTHON:-python3}"
cd "$_root"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($_py --version 2>&1)"
  "$_py" -m venv .venv
fi
_want="$(sha256sum pyproject.toml | cut -c1-16) extras=$_extras"
if [ "$(cat .venv/.hybridsearch-setup 2>/dev/null || true)" != "$_want" ]; then
  if nvidia-smi -L >/dev/null 2>&1; then
    echo "[setup] NVIDIA GPU found: torch comes from the package index as FlagEmbedding requires it"
  elif ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "[setup] no NVIDIA GPU: installing the CPU build torch==2.13.0"
    .venv/bin/pip install --quiet "torch==2.13.0"
  fi
  echo "[setup] installing hybridsearch[$_extras] (first run takes a few minutes)"
  .venv/bin/pip install --quiet -e ".[$_extras]"
  echo "$_want" > .venv/.hybridsearch-setup
fi
# Evaluation data: $HYBRIDSEARCH_DATA, or ../shared/data beside the checkout.
if [ -z "${HYBRIDSEARCH_DATA:-}" ] && [ -d "$_root/../shared/data" ]; then
  export HYBRIDSEARCH_DATA="$(cd "$_root/../shared/data" && pwd)"
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export PATH="$_root/.venv/bin:$PATH"
