#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/../.."
hybridsearch index --dataset miracl-subset/yo --encoder bm25-word --out indexes/built/miracl-subset-yo.bm25-word "$@"
