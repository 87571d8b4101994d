"""Readers and writers at the same time: threads searching while one thread changes the index, and a reader
process refreshing while a writer process commits. Every result is checked against the documents that were
committed or visible; every loop is bounded in count and time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from index_helpers import make_encoded

from hybridsearch.index import HybridIndex
from hybridsearch.types import Encoded

DIM = 16


def version_vector(doc: str, version: int) -> np.ndarray:
    """A unit dense vector that encodes ``(doc, version)``: a search for it must return that exact version."""
    rng = np.random.default_rng(abs(hash((doc, version))) % 2**32)
    v = rng.normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def encode(docs: list[str], version: int) -> Encoded:
    base = make_encoded(len(docs), seed=version)
    return Encoded(dense=np.stack([version_vector(d, version) for d in docs]), sparse=base.sparse, encoder=base.encoder)


@pytest.mark.timeout(120)
def test_threads_search_point_in_time_snapshots_while_one_thread_writes():
    index = HybridIndex(modes=("dense", "sparse"))
    ids = [f"d{i}" for i in range(40)]
    index.add(ids, encode(ids, 0), texts=[f"{d} v0" for d in ids], metadata=[{"v": 0}] * len(ids))
    # history[j]: the set of live (doc -> version) after the writer's j-th change, published before the change
    history: list[dict[str, int]] = [dict.fromkeys(ids, 0)]
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []
    checks = [0]

    def writer() -> None:
        rng = np.random.default_rng(5)
        live = dict.fromkeys(ids, 0)
        nxt = 40
        try:
            for step in range(1, 150):
                if stop.is_set():
                    break
                op = step % 5
                new = dict(live)
                if op in (0, 1):
                    docs = [f"d{nxt + j}" for j in range(3)]
                    nxt += 3
                    new.update(dict.fromkeys(docs, step))
                    with lock:
                        history.append(new)
                    index.add(docs, encode(docs, step), texts=[f"{d} v{step}" for d in docs], metadata=[{"v": step}] * 3)
                elif op == 2:
                    docs = list(rng.choice(sorted(live), 3, replace=False))
                    new.update(dict.fromkeys(docs, step))
                    with lock:
                        history.append(new)
                    index.upsert(docs, encode(docs, step), texts=[f"{d} v{step}" for d in docs], metadata=[{"v": step}] * 3)
                elif op == 3:
                    docs = list(rng.choice(sorted(live), 2, replace=False))
                    for d in docs:
                        del new[d]
                    with lock:
                        history.append(new)
                    index.delete(docs)
                else:
                    with lock:
                        history.append(new)
                    index.compact()
                live = new
                time.sleep(0.003)  # let the readers interleave with every kind of change
        except Exception as exc:  # pragma: no cover - reported by the test
            errors.append(f"writer: {exc!r}")
        finally:
            stop.set()

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        deadline = time.monotonic() + 60
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                with lock:
                    lo = len(history) - 1  # a state at least this new was published, or is about to be
                s = index.searcher()
                with lock:
                    hi = len(history)
                    candidates = [history[j] for j in range(max(lo - 1, 0), hi)]
                docs = s.doc_ids()
                same_ids = [h for h in candidates if sorted(h) == sorted(docs)]
                texts = {d: s.get(d).text for d in docs}
                state = next((h for h in same_ids if all(texts[d] == f"{d} v{v}" for d, v in h.items())), None)
                if state is None:
                    errors.append(f"the snapshot matches no published state between {lo} and {hi}")
                    return
                pick = list(rng.choice(docs, min(4, len(docs)), replace=False))
                q = Encoded(dense=np.stack([version_vector(d, state[d]) for d in pick]))
                for mode in ("dense", "hybrid"):
                    qq = q if mode == "dense" else Encoded(dense=q.dense, sparse=encode(pick, 0).sparse)
                    hits = s.search(qq, k=5, mode=mode, filter={"v": {"$gte": 0}} if mode == "hybrid" else None)
                    got = hits.doc_ids
                    if set(got.ravel()) - {""} - set(docs):
                        errors.append(f"{mode}: a document outside the snapshot")
                    if mode == "dense" and got[:, 0].tolist() != pick:
                        errors.append(f"dense top-1 {got[:, 0].tolist()} != {pick}")
                for d in pick:
                    doc = s.get(d)
                    if doc.text != f"{d} v{state[d]}" or doc.metadata != {"v": state[d]}:
                        errors.append(f"get({d}) = {doc.text!r} in a snapshot holding version {state[d]}")
                checks[0] += 1
        except Exception as exc:
            errors.append(f"reader: {exc!r}")

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors[:5]
    assert checks[0] >= 10, f"only {checks[0]} snapshot checks ran"
    final = history[-1]
    assert sorted(index.doc_ids()) == sorted(final)


def test_refresh_sees_new_commits_and_is_cheap_when_nothing_changed(tmp_path):
    d = tmp_path / "ix"
    w = HybridIndex()
    w.add(["a"], encode(["a"], 0))
    w.save(d)
    r = HybridIndex.load(d)
    held = r.searcher()
    assert r.refresh() is False
    w.add(["b"], encode(["b"], 1))
    w.save()
    assert r.doc_ids() == ["a"]  # a reader sees new commits only through refresh()
    assert r.refresh() is True and r.doc_ids() == ["a", "b"] and r.generation == 2
    assert held.doc_ids() == ["a"]  # a searcher taken before keeps its view
    assert r.refresh() is False
    r.add(["c"], encode(["c"], 2))
    with pytest.raises(Exception, match="not committed"):
        r.refresh()


READER = textwrap.dedent(
    """
    import sys, time, json
    import numpy as np
    from hybridsearch.index import HybridIndex
    path, final = sys.argv[1], int(sys.argv[2])
    index = HybridIndex.load(path)
    print("ready", flush=True)
    seen = []
    deadline = time.monotonic() + 60
    while (not seen or seen[-1][0] < final) and time.monotonic() < deadline:  # until the writer's last commit
        index.refresh()
        s = index.searcher()
        ids = s.doc_ids()
        # the writer commits batches b0..bK of 5 documents each: a committed state holds whole batches only
        batches = {d.split("-")[0] for d in ids}
        complete = all(sum(1 for d in ids if d.startswith(b + "-")) == 5 for b in batches)
        q = np.zeros((1, 8), np.float32); q[0, 0] = 1
        from hybridsearch.types import Encoded
        hits = s.search(Encoded(dense=q), k=3)
        ok = set(hits.doc_ids[0]) - {""} <= set(ids)
        seen.append((s.generation, len(ids), complete and ok))
        time.sleep(0.01)
    print(json.dumps(seen))
    """
)

WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from hybridsearch.index import HybridIndex
    from hybridsearch.types import Encoded
    path, batches = sys.argv[1], int(sys.argv[2])
    index = HybridIndex.load(path)
    rng = np.random.default_rng(0)
    for b in range(1, batches + 1):
        v = rng.normal(size=(5, 8)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        index.add([f"b{b}-{j}" for j in range(5)], Encoded(dense=v))
        index.save()
        time.sleep(0.02)  # a reader polls meanwhile
    print("done")
    """
)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_reader_process_refreshes_while_a_writer_process_commits(tmp_path):
    d = tmp_path / "ix"
    v = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    first = HybridIndex()
    first.add([f"b0-{j}" for j in range(5)], Encoded(dense=v))
    first.save(d)
    (tmp_path / "r.py").write_text(READER)
    (tmp_path / "w.py").write_text(WRITER)
    reader = subprocess.Popen([sys.executable, str(tmp_path / "r.py"), str(d), "31"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
    writer = subprocess.run([sys.executable, str(tmp_path / "w.py"), str(d), "30"], capture_output=True, text=True,
                            timeout=90)
    assert writer.returncode == 0, writer.stderr[-2000:]
    out, err = reader.communicate(timeout=90)
    assert reader.returncode == 0, err[-2000:]
    import json

    seen = json.loads(out)
    assert all(ok for _, _, ok in seen), [s for s in seen if not s[2]][:3]
    gens = [g for g, _, _ in seen]
    assert gens == sorted(gens), "a reader went back to an older generation"
    assert all(n == 5 * g for g, n, _ in seen), "a generation held another number of documents than it committed"
    assert gens[-1] == 31, "the reader never saw the last commit"
    assert len(set(gens)) >= 2, f"the reader saw only generations {sorted(set(gens))}"
