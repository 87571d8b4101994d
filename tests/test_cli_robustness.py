"""Property tests: no command line, with any arguments or input files, ends in a traceback.

Every subcommand the parser has is exercised, with arguments built from its own option list: values are
malformed files (bad UTF-8, byte-order marks, wrong JSON types, missing fields, huge lines, NUL bytes), broken
filters and options, numbers out of range, and paths to a real index directory. Each run must exit 0 or 2 with at
most one ``error:`` line and no traceback, and a failed run must leave the index directory byte for byte as it
was. Subcommands marked ``long_running`` (servers, whole-dataset jobs) are exercised at the argument level only.
The readers get their own property test. Examples are bounded (``HYBRIDSEARCH_FUZZ_EXAMPLES`` raises the count).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hybridsearch import Encoded
from hybridsearch.cli import build_parser, main
from hybridsearch.types import MultiVectors
from hybridsearch.errors import InputError
from hybridsearch.textfiles import read_documents

EXAMPLES = int(os.environ.get("HYBRIDSEARCH_FUZZ_EXAMPLES", "30"))
SECONDS_PER_RUN = 60  # one command on a handful of tiny documents; a hang fails the test instead of blocking it

DOCS = [
    {"_id": "d1", "title": "Cats", "text": "Cats are small domesticated felines that purr.", "metadata": {"year": 2001}},
    {"_id": "d2", "title": "Dogs", "text": "Dogs are loyal animals that bark at strangers.", "metadata": {"year": 2015}},
    {"_id": "d3", "text": "Fish swim in rivers, lakes and the open sea."},
]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the parser has no subcommands")


SUBCOMMANDS = _subcommands()
RUNNABLE = sorted(n for n, p in SUBCOMMANDS.items() if not p.get_default("long_running"))


# ------------------------------------------------------------------ malformed input files
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _obj(**fields: object) -> bytes:
    return json.dumps(fields).encode()


_jsonl_line = st.one_of(
    st.builds(lambda i, t: _obj(_id=f"x{i}", text=t), st.integers(0, 50), st.text(max_size=30)),  # valid, maybe empty
    st.builds(lambda t: _obj(text=t), st.sampled_from(["", "   ", "\t\n", "plain words"])),  # no id, empty-ish text
    st.builds(lambda v: _obj(_id="w", text=v), _json_value),  # text of any type
    st.builds(lambda v: _obj(_id=v, text="ok"), _json_value),  # id of any type
    st.builds(lambda v: _obj(_id="t", text="ok", title=v), _json_value),
    st.builds(lambda v: _obj(_id="m", text="ok", metadata=v), _json_value),
    st.builds(lambda v: json.dumps(v).encode(), _json_value),  # not an object, or missing fields
    st.sampled_from([
        b'{"_id": "n", "text": NaN}', b'{"_id": "s", "text": "\\ud800 lone"}', b'{"_id": "u", "text": "\\udc00"}',
        b'{"text": "x", "metadata": {"y": Infinity}}', b'{"_id": "z", "text": "nul\x00byte"}', b'{"_id": ',
        b'{"_id": "dup", "text": "a"}', b"[" * 3000, b"\x00\x00\x00", b"\xff\xfe\xfd", b"caf\xe9", b"\xc3",
        b'{"_id": "", "text": "empty id"}', b'{"_id": "a\\nb", "text": "id with a line break"}', b"", b"   ", b"\r",
        b'{"_id": 1e400, "text": "x"}', b'{"_id": "big", "text": "' + b"w " * 60_000 + b'"}',
    ]),
    st.binary(max_size=40),
)
_tsv_line = st.one_of(
    st.builds(lambda i, t: f"{i}\t{t}".encode(), st.text(max_size=6), st.text(max_size=30)),
    st.text(max_size=30).map(str.encode),
    st.sampled_from([b"\tno id", b"id\t", b"a\tb\tc", b"x\x00y\tz", b"\xff\tbad", b"k\t" + b"long " * 40_000]),
    st.binary(max_size=40),
)
_bom = st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00"])


@st.composite
def input_files(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".jsonl", ".jsonl", ".tsv", ".txt", ".json", ".csv"]))
    line = _tsv_line if suffix in (".tsv", ".txt") else _jsonl_line
    lines = draw(st.lists(line, max_size=6))
    if draw(st.booleans()):  # usually keep a real document so that deeper code runs too
        lines.insert(draw(st.integers(0, len(lines))), _obj(_id="keep", text="cats purr and dogs bark"))
    end = draw(st.sampled_from([b"\n", b"\r\n"]))
    return suffix, draw(_bom) + end.join(lines) + draw(st.sampled_from([b"", end]))


# ------------------------------------------------------------------ argument values
_FILTERS = ['{"year": ', '{"year": 2001}', "[1, 2]", '"year"', "null", "{}", '{"year": {"$gt": NaN}}', '{"$or": 3}',
            '{"title": {"$in": ["Cats"]}}', '{"year": {"$regex": "x"}}', "{" * 2000, "nan", "", "{'year': 1}"]
_ENCODERS = ["bm25-word", "bm25-word", "nope", "dense=bm25-word", "sparse=bm25-word", "sparse=bm25-word,sparse=x",
             "=", ""]
_NUMBERS = ["0", "-1", "1", "3", "1000000000", "1e9", "nan", "-0", "2.5", "inf", ""]
_OPTIONS = ["k1=abc", "b=2", "b=-1", "k1=0.9", "batch_size=-3", "bogus=1", "=1", "noequals", "stopwords=[1]", "k1=null"]


def _value_strategy(action: argparse.Action, paths: dict[str, str]) -> st.SearchStrategy[str]:
    files = st.sampled_from(sorted(paths.values()))
    generic = st.one_of(files, st.sampled_from(_FILTERS + _NUMBERS), st.text(st.characters(blacklist_characters="\x00"), max_size=12))
    if action.choices is not None:
        return st.one_of(st.sampled_from(sorted(map(str, action.choices))), st.just("not-a-choice"))
    dest = action.dest
    if dest == "filter":
        return st.sampled_from(_FILTERS)
    if dest == "encoder":
        return st.sampled_from(_ENCODERS)
    if dest == "option":
        return st.sampled_from(_OPTIONS)
    if dest in ("k", "candidates") or action.type in (int, float):
        return st.sampled_from(_NUMBERS)
    if dest == "dense_factory":
        return st.sampled_from(["Flat", "HNSW0", "HNSW1", "HNSW2", "IVF1024,PQ64", "IVF2,Flat", "PQ3", "SQ8", "garbage,,",
                                "IDMap,Flat", "HNSW32,SQfp16", "OPQ4,IVF2,PQ4", "RR8,Flat", "LSH", "NSG4", ""])
    if dest == "multivector_compression":
        return st.sampled_from(["fp32", "fp16", "int8", "binary", "int4", ""])
    if dest == "outputs":
        return st.sampled_from(["dense", "sparse", "sparse,dense", "colbert", "", ","])
    if dest == "fusion":
        return st.sampled_from(["rrf", "minmax", "weighted_sum(dense=1,sparse=x)", "nope", "weighted_sum("])
    if dest in ("index", "out", "input", "bundle", "texts", "ids", "state", "save_state", "dataset", "workdir"):
        return files
    return generic


@st.composite
def argv_for(draw: st.DrawFn, name: str, paths: dict[str, str]) -> list[str]:
    parser = SUBCOMMANDS[name]
    argv = [name]
    positionals: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:
            if draw(st.integers(0, 9)) > 0:  # now and then leave a positional out
                positionals.append(draw(_value_strategy(action, paths)))
            continue
        if not draw(st.booleans()) and not (action.required and draw(st.integers(0, 9)) > 0):
            continue
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            argv.append(flag)
        else:
            argv += [flag, draw(_value_strategy(action, paths))]
    if draw(st.booleans()):
        argv.append("--quiet" if "--quiet" in parser._option_string_actions else "--bogus-flag")
    return argv + positionals


# Valid invocations of the built-in commands ("{name}" is a path from the example's files). Examples start from
# these, swap the input for a malformed file and mutate a few arguments, so that they reach the readers,
# encoders and index writers instead of stopping at the first missing argument. Commands without a template
# get arguments built from their option list alone.
TEMPLATES: dict[str, list[list[str]]] = {
    "encode": [["encode", "{input}", "--encoder", "bm25-word", "--out", "{out}", "-q"]],
    "index": [
        ["index", "--input", "{input}", "--encoder", "bm25-word", "--out", "{index}", "-q"],
        ["index", "--bundle", "{bundle}", "--texts", "{input}", "--encoder", "bm25-word", "--state", "{state}",
         "--out", "{index}", "-q"],
        ["index", "--bundle", "{dense}", "--texts", "{input}", "--out", "{index}", "--dense-factory", "HNSW8",
         "--multivector-compression", "int8", "--multivector-pool-factor", "2", "-q"],
    ],
    "search": [["search", "{index}", "cats purr", "--filter", '{"year": 2001}', "-k", "3"]],
}


@st.composite
def mutated(draw: st.DrawFn, name: str, paths: dict[str, str]) -> list[str]:
    argv = [paths.get(a[1:-1], a) if a.startswith("{") and a.endswith("}") else a for a in draw(st.sampled_from(TEMPLATES[name]))]
    parser = SUBCOMMANDS[name]
    options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["value", "drop", "add"]))
        if op == "value" and len(argv) > 1:
            i = draw(st.integers(1, len(argv) - 1))
            action = parser._option_string_actions.get(argv[i - 1])
            if action is None or action.nargs == 0:
                action = next((a for a in parser._actions if not a.option_strings), options[0])
            argv[i] = draw(_value_strategy(action, paths))
        elif op == "drop" and len(argv) > 1:
            i = draw(st.integers(1, len(argv) - 1))
            action = parser._option_string_actions.get(argv[i])
            del argv[i : i + (2 if action is not None and action.nargs != 0 else 1)]
        else:
            action = draw(st.sampled_from(options))
            flag = draw(st.sampled_from(action.option_strings))
            argv[1:1] = [flag] if action.nargs == 0 else [flag, draw(_value_strategy(action, paths))]
    return argv


def argv_strategy(name: str, paths: dict[str, str]) -> st.SearchStrategy[list[str]]:
    if name in TEMPLATES:
        return st.one_of(argv_for(name, paths), mutated(name, paths), mutated(name, paths), mutated(name, paths))
    return argv_for(name, paths)


# ------------------------------------------------------------------ fixtures and checks
def _snapshot(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(directory.rglob("*"))
    }


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pristine")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["index", "--input", str(corpus), "--encoder", "bm25-word", "--out", str(root / "idx"), "-q"]) == 0
        assert main(["encode", str(corpus), "--encoder", "bm25-word", "--out", str(root / "enc.npz"),
                     "--save-state", str(root / "state.npz"), "-q"]) == 0
    # dense and multi-vector views (random unit vectors) for the FAISS and multi-vector code paths
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((len(DOCS), 8)).astype(np.float32)
    tokens = [rng.standard_normal((n, 8)).astype(np.float32) for n in (3, 1, 2)]
    Encoded(dense=dense / np.linalg.norm(dense, axis=1, keepdims=True),
            multivector=MultiVectors.from_list([t / np.linalg.norm(t, axis=1, keepdims=True) for t in tokens], dim=8),
            ).save(root / "dense.npz")
    (root / "dense.ids.txt").write_text("".join(d["_id"] + "\n" for d in DOCS), encoding="utf-8")
    return {"root": root, "corpus": corpus, "index": root / "idx", "bundle": root / "enc.npz", "state": root / "state.npz",
            "dense": root / "dense.npz"}


@contextlib.contextmanager
def _time_limit(seconds: int):
    def expired(signum, frame):  # noqa: ARG001
        raise TimeoutError(f"a command ran longer than {seconds}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _time_limit(SECONDS_PER_RUN):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _check_outcome(argv: list[str], code: int, out: str, err: str) -> None:
    assert "Traceback" not in err + out, f"{argv}: traceback\n{err}"
    assert code in (0, 2), f"{argv}: exit status {code}\n{err}"
    if code == 2:
        errors = [line for line in err.splitlines() if ": error: " in line]
        assert len(errors) == 1 and errors[0].startswith("hybridsearch"), f"{argv}: expected one error line\n{err}"


@pytest.fixture()
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Relative paths land in a scratch directory; no Workers AI credentials (nothing leaves the machine)."""
    for var in ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "HYBRIDSEARCH_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------ the properties
@pytest.mark.slow
@pytest.mark.parametrize("name", RUNNABLE)
def test_no_command_ends_in_a_traceback_or_changes_an_index_it_failed_on(name, pristine, isolated):
    before = _snapshot(pristine["index"])

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=st.data(), file=input_files())
    def run(data: st.DataObject, file: tuple[str, bytes]) -> None:
        with tempfile.TemporaryDirectory(dir=isolated) as scratch:
            work = Path(scratch)
            index = work / "idx"
            shutil.copytree(pristine["index"], index)
            bad = work / f"input{file[0]}"
            bad.write_bytes(file[1])
            paths = {
                "index": str(index), "input": str(bad), "corpus": str(pristine["corpus"]), "bundle": str(pristine["bundle"]),
                "state": str(pristine["state"]), "dense": str(pristine["dense"]), "missing": str(work / "missing.jsonl"), "new": str(work / "new"),
                "dir": scratch, "out": str(work / "out.npz"),
            }
            argv = data.draw(argv_strategy(name, paths), label="argv")
            code, out, err = _run(argv)
            assert "TimeoutError" not in err, f"{argv} ran past {SECONDS_PER_RUN}s; mark it set_defaults(long_running=True)"
            _check_outcome(argv, code, out, err)
            event(f"exit {code}: " + " ".join(err.strip().split(": error: ")[-1].split()[:4]))
            if code != 0:
                assert _snapshot(index) == before, f"{argv} failed but changed the index directory\n{err}"

    run()


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
@settings(max_examples=4 * EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_every_parser_rejects_bad_arguments_in_one_line(name, data, tmp_path_factory):
    """Every subcommand, including the long-running ones, at the argument level: parse, never run."""
    paths = {"missing": "/nonexistent/x.jsonl", "rel": "x.jsonl"}
    argv = data.draw(argv_for(name, paths), label="argv")
    if data.draw(st.booleans()):
        argv.insert(data.draw(st.integers(1, len(argv))), data.draw(st.sampled_from(["--k", "-k", "--", "-", "--no-such"])))
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            build_parser().parse_args(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code
    _check_outcome(argv, code, "", err.getvalue())


@settings(max_examples=4 * EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(argv=st.lists(st.one_of(st.sampled_from(["--version", "--help", "-h", "--", "-", "--bogus", "-k", *SUBCOMMANDS]),
                               st.text(st.characters(blacklist_characters="\x00"), max_size=10)), max_size=4))
def test_top_level_arguments_are_parsed_or_rejected_in_one_line(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = build_parser().parse_args(argv) and 0
        except SystemExit as exc:
            code = exc.code
    _check_outcome(argv, code, out.getvalue(), err.getvalue())


@settings(max_examples=10 * EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(file=input_files())
def test_reader_returns_documents_or_raises_one_line_input_error(file, tmp_path_factory):
    path = tmp_path_factory.mktemp("reader") / f"docs{file[0]}"
    path.write_bytes(file[1])
    try:
        docs = read_documents(path)
    except InputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    for d in docs:
        assert d.doc_id.strip() and "\n" not in d.doc_id
        for s in (d.doc_id, d.text, d.title, json.dumps(d.metadata, ensure_ascii=False)):
            s.encode("utf-8")  # everything read can be written back
