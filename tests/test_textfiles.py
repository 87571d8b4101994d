from __future__ import annotations

import pytest

from hybridsearch.errors import InputError
from hybridsearch.textfiles import read_documents, read_lines, read_text


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_jsonl_fields_ids_titles_metadata_and_empty_texts(tmp_path):
    path = write(tmp_path, "d.jsonl", b'{"_id": "a", "title": "T", "text": "x", "metadata": {"y": 1}}\n\n'
                 b'{"docid": 7, "text": ""}\n{"id": "c", "text": "  ", "title": null, "metadata": null}\n{"text": "z"}\n')
    docs = read_documents(path)
    assert [(d.doc_id, d.text, d.title, d.metadata) for d in docs] == [
        ("a", "x", "T", {"y": 1}), ("7", "", "", {}), ("c", "  ", "", {}), ("3", "z", "", {})
    ]


def test_tsv_ids_and_line_numbers(tmp_path):
    path = write(tmp_path, "d.tsv", b"a\tfirst\r\n\nno tab here\nb\t\n")
    assert [(d.doc_id, d.text) for d in read_documents(path)] == [("a", "first"), ("2", "no tab here"), ("b", "")]


@pytest.mark.parametrize("suffix", [".jsonl", ".tsv"])
def test_a_utf8_byte_order_mark_is_skipped(tmp_path, suffix):
    body = b'{"_id": "a", "text": "caf\xc3\xa9"}\n' if suffix == ".jsonl" else b"a\tcaf\xc3\xa9\n"
    docs = read_documents(write(tmp_path, "d" + suffix, b"\xef\xbb\xbf" + body))
    assert [(d.doc_id, d.text) for d in docs] == [("a", "café")]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xff\xfe{\x00}\x00", r"is UTF-16-LE \(byte-order mark ff fe at byte offset 0\), not UTF-8; convert it"),
        (b"\xfe\xff\x00{", r"is UTF-16-BE \(byte-order mark fe ff at byte offset 0\)"),
        (b"\xff\xfe\x00\x00{\x00\x00\x00", r"is UTF-32-LE \(byte-order mark ff fe 00 00 at byte offset 0\)"),
        # offsets count bytes from the start of the file, BOM and earlier multi-byte characters included: 3 + 15 + 13
        (b'\xef\xbb\xbf{"text": "\xc3\xa9"}\n{"text": "caf\xe9"}\n', r"byte 0xe9 at byte offset 31 \(line 2\)"),
        (b"\xc3", r"byte 0xc3 at byte offset 0 \(line 1\)"),
    ],
    ids=["utf-16-le", "utf-16-be", "utf-32-le", "latin-1", "truncated"],
)
def test_bytes_that_are_not_utf8_name_file_and_offset(tmp_path, data, message):
    path = write(tmp_path, "d.jsonl", data)
    with pytest.raises(InputError, match=message) as info:
        read_documents(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError, match=message.split(" \\(line")[0]):
        read_text(path)


@pytest.mark.parametrize(
    "line, message",
    [
        (b'{"_id": "a", "text": ', "is not valid JSON"),
        (b'{"_id": "a", "text": NaN}', "NaN is not valid JSON"),
        (b'{"_id": "a", "text": "x", "metadata": {"v": -Infinity}}', "-Infinity is not valid JSON"),
        (b"[1, 2]", "holds an array, not a JSON object"),
        (b'"just text"', "holds a string, not a JSON object"),
        (b'{"_id": "a"}', "needs a string field 'text' \\(no 'text' field\\)"),
        (b'{"_id": "a", "text": null}', "'text' is null"),
        (b'{"_id": "a", "text": ["x"]}', "'text' is an array"),
        (b'{"_id": "a", "text": "x", "title": 5}', "'title' must be a string or null, got a number"),
        (b'{"_id": true, "text": "x"}', "'_id' must be a string or an integer, got a boolean"),
        (b'{"docid": {"a": 1}, "text": "x"}', "'docid' must be a string or an integer, got an object"),
        (b'{"_id": "", "text": "x"}', "the document id is empty"),
        (b'{"_id": "a\\nb", "text": "x"}', "contains a line break"),
        (b'{"_id": "a", "text": "x", "metadata": [1]}', "'metadata' must be a JSON object, got an array"),
        (b'{"_id": "a", "text": "bad \\ud800 escape"}', "text holds an unpaired surrogate"),
        (b'{"_id": "a", "text": "x", "metadata": {"k": "\\udfff"}}', "metadata holds an unpaired surrogate"),
        (b"[" * 100_000, "nests JSON too deeply"),
        (b'{"_id": "a", "text": "nul \x00 byte"}', "is not valid JSON"),  # raw control characters are not JSON
    ],
)
def test_malformed_jsonl_lines_raise_one_line_input_errors(tmp_path, line, message):
    path = write(tmp_path, "d.jsonl", b'{"_id": "ok", "text": "fine"}\n' + line + b"\n")
    with pytest.raises(InputError, match=message) as info:
        read_documents(path)
    assert f"{path}:2" in str(info.value) and "\n" not in str(info.value)


def test_escaped_nul_and_paired_surrogates_are_text(tmp_path):
    path = write(tmp_path, "d.jsonl", b'{"_id": "a", "text": "nul \\u0000 and \\ud83d\\ude00"}\n')
    assert read_documents(path)[0].text == "nul \x00 and \U0001f600"


def test_huge_lines_are_read(tmp_path):
    path = write(tmp_path, "d.tsv", b"a\t" + b"word " * 400_000 + b"\n")
    assert len(read_documents(path)[0].text) == 2_000_000


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("d.jsonl", b"\n  \n", "holds no documents"),
        ("d.csv", b"a,b\n", "unsupported input format '.csv'"),
        ("d.tsv", b"\tno id\n", "the document id is empty"),
    ],
)
def test_unusable_files(tmp_path, name, data, message):
    with pytest.raises(InputError, match=message):
        read_documents(write(tmp_path, name, data))


def test_missing_files_and_directories(tmp_path):
    with pytest.raises(InputError, match="no such input file"):
        read_documents(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="is a directory"):
        read_documents(tmp_path)
    with pytest.raises(InputError, match="no such input file"):
        list(read_lines(tmp_path / "missing.txt"))


def test_read_lines_numbers_lines_and_strips_line_breaks(tmp_path):
    path = write(tmp_path, "ids.txt", b"\xef\xbb\xbfa\r\nb\n\nc")
    assert list(read_lines(path)) == [(1, "a"), (2, "b"), (3, ""), (4, "c")]
    assert read_text(path) == "a\r\nb\n\nc"
