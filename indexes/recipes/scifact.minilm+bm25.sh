#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/../.."
hybridsearch index --dataset scifact --encoder "dense=minilm,sparse=bm25" --out indexes/built/scifact.minilm+bm25 "$@"
