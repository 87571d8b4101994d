#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/../.."
hybridsearch index --dataset scifact --encoder bm25 --out indexes/built/scifact.bm25 "$@"
