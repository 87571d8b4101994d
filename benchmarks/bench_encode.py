"""Encode throughput of the bge-m3 encoder at full model size, on CPU or GPU.

The Hugging Face hub may be out of reach, so the script builds a model directory with bge-m3's exact shapes
(XLM-R large: 24 layers, hidden 1024, 16 heads, 250,002-token vocabulary, 8,194 positions; a 1024x1024 ColBERT
head and a 1024x1 sparse head) with random weights and the real XLM-R tokenizer from ``$HYBRIDSEARCH_DATA``. Speed
does not depend on the weights' values, so the figures are the real model's; the vectors mean nothing. Pass
``--model /path/to/bge-m3`` to time the real weights instead.

It loads the directory through ``get_encoder("bge-m3")`` (FlagEmbedding underneath) and encodes SciFact passages
(title + abstract, mean ~300 XLM-R tokens) with all three views, then times the bare transformers backbone on the
same batches as the same-run baseline (the ratio is what our plumbing and the heads cost). Query latency is timed
one query at a time (batch 1), as a server sees it.

    python benchmarks/bench_encode.py --device cpu  --passages 32  --queries 20
    python benchmarks/bench_encode.py --device cuda --passages 4000 --queries 300 --batch-size 64

Writes ``benchmarks/results/encode_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BGE_M3_SHAPE = dict(
    vocab_size=250002,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    max_position_embeddings=8194,
    type_vocab_size=1,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    layer_norm_eps=1e-5,
)


def build_full_size_model(out: Path, tokenizer_json: Path) -> Path:
    """A directory with bge-m3's layout and shapes, random weights, and the real XLM-R tokenizer."""
    import torch
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    out.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_file(str(tokenizer_json)),
        bos_token="<s>",
        cls_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=8192,
    )
    fast.save_pretrained(str(out))
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "XLMRobertaTokenizer"
    cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    torch.manual_seed(0)
    model = XLMRobertaModel(
        XLMRobertaConfig(**BGE_M3_SHAPE, architectures=["XLMRobertaModel"]), add_pooling_layer=False
    )
    model.save_pretrained(str(out))
    torch.save(torch.nn.Linear(1024, 1024).state_dict(), out / "colbert_linear.pt")
    torch.save(torch.nn.Linear(1024, 1).state_dict(), out / "sparse_linear.pt")
    return out


def scifact_texts(data: Path, n: int) -> list[str]:
    texts = []
    with open(data / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            texts.append(f"{d.get('title', '')} {d['text']}".strip())
            if len(texts) >= n:
                break
    return texts


def scifact_queries(data: Path, n: int) -> list[str]:
    out = []
    with open(data / "scifact" / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line)["text"])
            if len(out) >= n:
                break
    return out


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--model", help="a real bge-m3 directory (default: build one with bge-m3's shapes)")
    ap.add_argument("--passages", type=int, default=32)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=512, help="passage_max_length in tokens")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()

    import torch

    from hybridsearch import get_encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(os.environ.get("HYBRIDSEARCH_DATA", ROOT.parent / "shared" / "data"))
    texts = scifact_texts(data, args.passages)
    queries = scifact_queries(data, args.queries)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model_dir = (
            Path(args.model)
            if args.model
            else build_full_size_model(
                Path(tmp) / "bge-m3-shaped", data / "tokenizers" / "xlm-roberta" / "tokenizer.json"
            )
        )
        build_s = time.perf_counter() - t0
        enc = get_encoder(
            "bge-m3",
            model=str(model_dir),
            device=args.device,
            batch_size=args.batch_size,
            passage_max_length=args.max_length,
            use_fp16=args.device.startswith("cuda"),
        )
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(model_dir))
        n_tokens = int(sum(len(x) for x in tok(texts, truncation=True, max_length=args.max_length)["input_ids"]))

        enc.encode_corpus(texts[: min(len(texts), args.batch_size)])  # warm-up: load, allocate, compile kernels
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = enc.encode_corpus(texts)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        ours_s = time.perf_counter() - t0
        assert out.dense.shape == (len(texts), 1024) and out.sparse.shape[0] == len(texts)

        # Same-run baseline: the bare backbone on the same length-sorted batches, no heads, no conversion.
        from transformers import XLMRobertaModel

        backbone = XLMRobertaModel.from_pretrained(str(model_dir), add_pooling_layer=False).to(args.device).eval()
        if args.device.startswith("cuda"):
            backbone = backbone.half()
        order = np.argsort([-len(t) for t in texts])
        batches = [[texts[i] for i in order[s : s + args.batch_size]] for s in range(0, len(texts), args.batch_size)]
        with torch.inference_mode():
            b = tok(batches[0], padding=True, truncation=True, max_length=args.max_length, return_tensors="pt").to(
                args.device
            )
            backbone(**b)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for batch in batches:
                b = tok(batch, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt").to(
                    args.device
                )
                backbone(**b).last_hidden_state[:, 0].float().cpu()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            bare_s = time.perf_counter() - t0
        del backbone

        lat = []
        for q in queries:
            t0 = time.perf_counter()
            enc.encode_queries([q])
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            lat.append((time.perf_counter() - t0) * 1000)

    device_name = (
        torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or platform.machine()
    )
    result = {
        "device": args.device,
        "device_name": device_name,
        "cpu_threads": torch.get_num_threads(),
        "model": args.model or "bge-m3 shapes, random weights (speed only)",
        "dtype": "fp16" if args.device.startswith("cuda") else "fp32",
        "passages": len(texts),
        "tokens": n_tokens,
        "mean_tokens_per_passage": n_tokens / max(len(texts), 1),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "build_model_s": build_s,
        "encode_corpus_s": ours_s,
        "passages_per_s": len(texts) / ours_s,
        "tokens_per_s": n_tokens / ours_s,
        "bare_backbone_s": bare_s,
        "bare_backbone_passages_per_s": len(texts) / bare_s,
        "ours_over_bare": ours_s / bare_s,
        "query_latency_ms_p50": percentile(lat, 50),
        "query_latency_ms_p99": percentile(lat, 99),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"encode_{args.device.split(':')[0]}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
