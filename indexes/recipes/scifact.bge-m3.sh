#!/usr/bin/env bash
# Needs the real weights: BGE_M3=/path/to/bge-m3 (a local copy of the BAAI/bge-m3 repository). A GPU is advised.
set -euo pipefail
cd "$(dirname "$0")/../.."
hybridsearch index --dataset scifact --encoder bge-m3 -o "model=${BGE_M3:-BAAI/bge-m3}" -o passage_max_length=512 \
  --outputs dense,sparse,multivector --multivector-compression binary --out indexes/built/scifact.bge-m3 "$@"
