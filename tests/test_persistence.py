"""Saving and loading a HybridIndex: round trips, reuse of unchanged files, corruption, and kill -9 crash safety."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from index_helpers import build, make_encoded

from hybridsearch.errors import (
    IndexCorruptedError,
    IndexFormatError,
    IndexMismatchError,
    IndexVersionError,
    InputError,
)
from hybridsearch.index import HybridIndex
from hybridsearch.index.manifest import FORMAT_VERSION, checksum_file, read_manifest
from hybridsearch.types import EncoderInfo

MODES = ("dense", "sparse", "multivector", "hybrid")


def same_results(a: HybridIndex, b: HybridIndex, seed: int = 11) -> None:
    q = make_encoded(3, seed=seed)
    for mode in MODES:
        for flt in (None, {"lang": "sw"}):
            x = a.search(q, k=12, mode=mode, filter=flt)
            y = b.search(q, k=12, mode=mode, filter=flt)
            np.testing.assert_array_equal(x.rows, y.rows)
            np.testing.assert_array_equal(x.scores, y.scores)
            assert x.doc_ids.tolist() == y.doc_ids.tolist() and x.ranks.keys() == y.ranks.keys()
    assert a.doc_ids() == b.doc_ids()
    assert [a.get(d) for d in a.doc_ids()] == [b.get(d) for d in b.doc_ids()]
    ia, ib = a.info(), b.info()
    for key in ("documents", "stored", "deleted", "next_row", "modes", "dims", "encoder", "config"):
        assert ia[key] == ib[key], key


@pytest.fixture()
def saved(tmp_path):
    index, _, ids = build(90)
    index.delete(ids[:5])
    index.upsert(["d10"], make_encoded(1, seed=4), texts=["new ten"], metadata=[{"lang": "sw"}])
    path = index.save(tmp_path / "ix")
    return index, path


@pytest.mark.parametrize("mmap", [True, False])
def test_round_trip(saved, mmap):
    index, path = saved
    loaded = HybridIndex.load(path, mmap=mmap)
    same_results(index, loaded)
    assert loaded.encoder == index.encoder and loaded.path == path and loaded.generation == 1
    assert sorted(p.name for p in path.iterdir()) == [".lock", "gen-000001", "manifest.json"]
    m = read_manifest(path)
    assert m.format_version == FORMAT_VERSION and m.counts["documents"] == len(index) == 85
    assert m.encoder == {"name": "toy", "model_id": "toy/v1", "fingerprint": "f00d"}
    assert m.dims == {"dense": 16, "sparse": 64, "multivector": 8}
    assert m.config["dense"]["factory"] == "Flat" and m.config["multivector"]["compression"] == "fp32"
    for rel, rec in m.files.items():  # every file is listed with its size and CRC
        assert checksum_file(path / m.directory / rel) == rec
    assert HybridIndex.load(path, verify=False).doc_ids() == index.doc_ids()


def test_empty_index_round_trip(tmp_path):
    HybridIndex(dense_factory="HNSW8").save(tmp_path / "empty")
    loaded = HybridIndex.load(tmp_path / "empty")
    assert len(loaded) == 0 and loaded.info()["config"]["dense"]["factory"] == "HNSW8"
    loaded.add(["a"], make_encoded(1, seed=1))
    loaded.save()
    assert HybridIndex.load(tmp_path / "empty").doc_ids() == ["a"]


def test_mutating_a_loaded_index_and_saving_in_place(saved):
    index, path = saved
    loaded = HybridIndex.load(path)  # memory-mapped
    for ix in (index, loaded):  # the same changes on both
        ix.add(["n1", "n2"], make_encoded(2, seed=21), metadata=[{"lang": "sw"}, {"lang": "yo"}])
        ix.delete(["d20", "n2"])
        ix.upsert(["d30"], make_encoded(1, seed=22))
    same_results(index, loaded)
    loaded.save()
    assert loaded.generation == 2
    again = HybridIndex.load(path)
    same_results(index, again)
    again.compact()
    again.save()
    index.compact()
    same_results(index, HybridIndex.load(path))
    assert [p.name for p in path.iterdir() if p.name.startswith("gen-")] == ["gen-000003"]


def test_save_without_a_path(tmp_path):
    with pytest.raises(InputError, match="pass a directory"):
        HybridIndex().save()
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        HybridIndex().save(tmp_path / "file")


def _inodes(path: Path) -> dict[str, int]:
    gen = path / read_manifest(path).directory
    return {str(p.relative_to(gen)): p.stat().st_ino for p in gen.rglob("*") if p.is_file()}


def test_unchanged_files_are_hard_linked_not_rewritten(saved):
    index, path = saved
    before = _inodes(path)
    index.delete(["d50"])
    index.save()
    after = _inodes(path)
    rewritten = sorted(k for k in after if after[k] != before.get(k))
    assert rewritten == ["commit.json", "docs/deleted.npy", "docs/docs.json"]  # the manifest copy, tombstones, part list
    index.add(["z"], make_encoded(1, seed=3))
    index.save()
    third = _inodes(path)
    assert all(third[k] == after[k] for k in after if k.startswith("docs/part-"))  # old documents stay linked
    assert any(k.startswith("docs/part-") and k not in after for k in third)  # the new document got a new part
    assert third["dense/dense.faiss"] != after["dense/dense.faiss"]
    same_results(index, HybridIndex.load(path))


def test_leftovers_of_interrupted_saves_are_ignored_then_cleaned(saved):
    index, path = saved
    (path / ".tmp-gen-2-999").mkdir()
    (path / ".tmp-gen-2-999" / "junk.npy").write_bytes(b"x" * 10)
    (path / "gen-000002").mkdir()  # renamed into place, but the manifest never switched
    (path / ".manifest.json.abcd.tmp").write_text("{")
    (path / "notes.txt").write_text("mine")  # not ours: must survive
    same_results(index, HybridIndex.load(path))
    index.save()
    names = sorted(p.name for p in path.iterdir())
    assert names == [".lock", "gen-000002", "manifest.json", "notes.txt"]
    same_results(index, HybridIndex.load(path))


def test_readers_never_see_a_half_written_index(saved):
    """Loads racing with saves (which delete the previous generation) always open one whole commit."""
    import threading

    index, path = saved
    committed = {len(index)}
    errors: list[BaseException] = []
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                loaded = HybridIndex.load(path, verify=False)
                seen.append(len(loaded))
                assert len(loaded.doc_ids()) == len(loaded)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(12):
            index.add([f"r{i}"], make_encoded(1, seed=100 + i))
            committed.add(len(index))
            index.save()
    finally:
        done.set()
        reader.join(timeout=60)
    assert not errors, errors[0]
    assert seen and set(seen) <= committed


# ----------------------------------------------------------------------------------------------- damage
def _flip(p: Path, at: int | None = None) -> None:
    data = bytearray(p.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x5A
    p.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "rel",
    ["dense/dense.faiss", "sparse/sparse.seg0.r_w.npy", "multivector/multivector.codes.npy",
     "docs/part-000000/doc_ids.bin", "docs/part-000000/metadata.jsonl", "docs/deleted.npy", "docs/docs.json"],
)
def test_flipped_bytes_are_detected(saved, rel):
    _, path = saved
    _flip(path / "gen-000001" / rel)
    with pytest.raises(IndexCorruptedError, match="CRC-32"):
        HybridIndex.load(path)


@pytest.mark.parametrize("rel", ["dense/dense.faiss", "sparse/sparse.seg0.r_lo.npy", "docs/part-000000/rows.npy"])
@pytest.mark.parametrize("verify", [True, False])
def test_truncated_or_missing_files_are_detected(saved, rel, verify):
    _, path = saved
    p = path / "gen-000001" / rel
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(IndexCorruptedError, match="truncated"):
        HybridIndex.load(path, verify=verify)
    p.unlink()
    with pytest.raises(IndexCorruptedError, match="missing"):
        HybridIndex.load(path, verify=verify)


def test_damaged_manifest(saved):
    _, path = saved
    manifest = path / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text.replace('"documents": 85', '"documents": 84'))
    with pytest.raises(IndexCorruptedError, match="fails its checksum"):
        HybridIndex.load(path)
    manifest.write_text(text[: len(text) // 2])
    with pytest.raises(IndexCorruptedError, match="not valid JSON"):
        HybridIndex.load(path)
    manifest.write_text(text)
    (path / "gen-000001").rename(path / "gen-000005")
    with pytest.raises(IndexCorruptedError, match="gen-000001 is missing"):
        HybridIndex.load(path)


def test_future_version_and_foreign_directories(saved, tmp_path):
    _, path = saved
    body = json.loads((path / "manifest.json").read_text())
    body["format_version"] = FORMAT_VERSION + 1
    (path / "manifest.json").write_text(json.dumps(body))
    with pytest.raises(IndexVersionError, match="newer than this library reads"):
        HybridIndex.load(path)
    with pytest.raises(IndexVersionError):  # never overwritten by an older library
        HybridIndex().save(path)
    assert json.loads((path / "manifest.json").read_text())["format_version"] == FORMAT_VERSION + 1
    with pytest.raises(IndexFormatError, match="manifest.json is missing"):
        HybridIndex.load(tmp_path)
    with pytest.raises(IndexFormatError, match="does not exist"):
        HybridIndex.load(tmp_path / "nowhere")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(IndexFormatError, match="not a hybridsearch index"):
        HybridIndex.load(tmp_path / "other")


def test_wrong_encoder_after_loading(saved):
    _, path = saved
    loaded = HybridIndex.load(path)
    other = make_encoded(1, seed=1, encoder=EncoderInfo("bge-m3", "BAAI/bge-m3", "abc"))
    with pytest.raises(IndexMismatchError, match="'bge-m3'.*'toy'"):
        loaded.search(other, k=3)
    with pytest.raises(IndexMismatchError):
        loaded.add(["x"], other)


# ----------------------------------------------------------------------------------------------- kill -9
ENCODE = textwrap.dedent(
    """
    import hashlib
    import numpy as np, scipy.sparse as sp
    from hybridsearch.types import Encoded

    def encode(texts):
        # deterministic vectors from the text: a checker can recompute any document's vectors
        dense, rows = [], []
        for t in texts:
            rng = np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
            v = rng.normal(size=8)
            dense.append(v / np.linalg.norm(v))
            w = np.zeros(32, np.float32)
            w[rng.choice(32, 3, replace=False)] = rng.uniform(0.1, 1, 3)
            rows.append(w)
        return Encoded(dense=np.array(dense, np.float32), sparse=sp.csr_matrix(np.array(rows)))

    def digest(index):
        h = hashlib.sha256()
        for d in sorted(index.doc_ids()):
            h.update(f"{d}={index.get(d).text};".encode())
        return h.hexdigest()
    """
)

WRITER = ENCODE + textwrap.dedent(
    """
    # Writes generation after generation to one index directory until it is killed. Before each save it logs
    # the generation number and a digest of the content that save commits.
    import os, sys
    from hybridsearch.index import HybridIndex

    path, log = sys.argv[1], sys.argv[2]
    index = HybridIndex.load(path) if os.path.exists(os.path.join(path, "manifest.json")) else HybridIndex()
    g = index.generation or 0
    print("ready", flush=True)
    while True:
        g += 1
        rng = np.random.default_rng(g)  # the changes of generation g depend only on g and the state before
        live = sorted(index.doc_ids())
        new = [f"g{g}-{j}" for j in range(int(rng.integers(5, 15)))]
        index.add(new, encode(new), texts=new, metadata=[{"g": g}] * len(new))
        if len(live) > 10:
            gone = list(rng.choice(live, 3, replace=False))
            index.delete(gone)
            keep = [d for d in live if d not in gone]
            changed = list(rng.choice(keep, 2, replace=False))
            texts = [f"{d} v{g}" for d in changed]
            index.upsert(changed, encode(texts), texts=texts, metadata=[{"g": g}] * 2)
        if g % 5 == 0:
            index.compact()
        with open(log, "a") as f:
            f.write(f"{g} {digest(index)} {len(index)}\\n")
            f.flush()
            os.fsync(f.fileno())
        index.save(path)
        assert index.generation == g
    """
)


def _expected(log: Path) -> dict[int, tuple[str, int]]:
    out: dict[int, tuple[str, int]] = {}
    for line in log.read_text().splitlines():
        g, dig, n = line.split()
        assert out.setdefault(int(g), (dig, int(n))) == (dig, int(n)), "a generation was written with two contents"
    return out


def _check_committed_state(path: Path, log: Path) -> int:
    """Load the index and check that it is exactly one committed state and that it searches correctly."""
    ns: dict = {}
    exec(ENCODE, ns)
    index = HybridIndex.load(path)
    g = int(index.generation)  # type: ignore[arg-type]
    assert (ns["digest"](index), len(index)) == _expected(log)[g], f"generation {g} does not hold what was committed"
    ids = index.doc_ids()
    sample = [ids[i] for i in np.random.default_rng(g).choice(len(ids), min(5, len(ids)), replace=False)]
    q = ns["encode"]([index.get(d).text for d in sample])
    hits = index.search(q, k=1, mode="dense")  # every document's vectors belong to it
    assert hits.doc_ids[:, 0].tolist() == sample and np.allclose(hits.scores[:, 0], 1.0, atol=1e-5)
    hybrid = index.search(q, k=10, mode="hybrid")
    assert set(hybrid.doc_ids.ravel()) - {""} <= set(ids)
    return g


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_during_saves_leaves_a_committed_state(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path, log = tmp_path / "ix", tmp_path / "commits.log"
    log.touch()
    rnd = random.Random(1234)
    last = 0
    kills = in_save = 0
    started = time.monotonic()
    while kills < 20 and time.monotonic() - started < 50:
        proc = subprocess.Popen([sys.executable, str(script), str(path), str(log)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != b"ready":
            proc.kill()
            pytest.fail(f"the writer did not start: {line!r} {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(rnd.uniform(0.0, 1.5))  # a save takes 0.1-0.5 s here: most kills land in one
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, f"the writer failed on its own: {err.decode()[-2000:]}"
        kills += 1
        if not (path / "manifest.json").exists():
            assert last == 0, "the manifest disappeared after a commit"
            with pytest.raises(IndexFormatError):
                HybridIndex.load(path)
            continue
        in_save += any(p.name.startswith(".tmp-gen-") for p in path.iterdir())
        g = _check_committed_state(path, log)
        assert g >= last, "an older generation came back"
        last = g
    print(f"{kills} kills, {in_save} inside a save, {last} commits in {time.monotonic() - started:.1f} s")
    assert kills >= 10 and last >= 5, f"only {kills} kills and {last} commits"
    # the next save cleans what interrupted saves left behind
    index = HybridIndex.load(path)
    index.save()
    leftovers = [p.name for p in path.iterdir() if p.name not in (".lock", "manifest.json", f"gen-{index.generation:06d}")]
    assert leftovers == []


RACER = ENCODE + textwrap.dedent(
    """
    # One of two writers racing on one directory: each commit adds three documents; a commit that loses the race
    # (CommitConflictError) reloads the newest generation and applies its batch again. A batch is logged only
    # after its save returned.
    import os, sys
    from hybridsearch.errors import CommitConflictError
    from hybridsearch.index import HybridIndex

    path, log, tag = sys.argv[1], sys.argv[2], sys.argv[3]
    index = HybridIndex.load(path)
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        new = [f"{tag}-{os.getpid()}-{n}-{j}" for j in range(3)]
        while True:
            index.add(new, encode(new), texts=new)
            try:
                index.save()
                break
            except CommitConflictError:
                index = HybridIndex.load(path)
        with open(log, "a") as f:
            f.write(" ".join(new) + "\\n")
            f.flush()
            os.fsync(f.fileno())
    """
)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_two_writers_racing_never_lose_a_commit(tmp_path):
    ns: dict = {}
    exec(ENCODE, ns)
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    path, log = tmp_path / "ix", tmp_path / "committed.log"
    log.touch()
    seed = HybridIndex()
    seed.add(["seed"], ns["encode"](["seed"]), texts=["seed"])
    seed.save(path)
    rnd = random.Random(99)
    rounds = 0
    started = time.monotonic()
    while rounds < 8 and time.monotonic() - started < 60:
        procs = [subprocess.Popen([sys.executable, str(script), str(path), str(log), tag],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for tag in ("A", "B")]
        for p in procs:
            line = p.stdout.readline()  # type: ignore[union-attr]
            if line.strip() != b"ready":
                for q in procs:
                    q.kill()
                pytest.fail(f"a writer did not start: {line!r} {p.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(rnd.uniform(0.3, 2.0))
        for p in rnd.sample(procs, 2):
            p.send_signal(signal.SIGKILL)
            time.sleep(rnd.uniform(0, 0.2))
        for p in procs:
            _, err = p.communicate()
            assert p.returncode == -signal.SIGKILL, f"a writer failed on its own: {err.decode()[-2000:]}"
        rounds += 1
        index = HybridIndex.load(path)  # every file verifies against its checksum
        held = set(index.doc_ids())
        committed = {d for line in log.read_text().splitlines() for d in line.split()}
        lost = committed - held
        assert not lost, f"{len(lost)} committed documents are gone, e.g. {sorted(lost)[:3]}"
        assert "seed" in held
        batches = {d.rsplit("-", 1)[0] for d in held - {"seed"}}
        assert all(sum(d.startswith(b + "-") for d in held) == 3 for b in batches), "a batch was committed in part"
    assert rounds >= 4 and len(committed) >= 30, f"{rounds} rounds, {len(committed)} committed documents"
