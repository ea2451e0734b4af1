"""Builds CLIP's text tokenizer in the Hugging Face `tokenizers` JSON format.

Usage: clip-tokenizer.py BPE_MERGES_GZ OUTPUT_JSON

BPE_MERGES_GZ is `open_clip/bpe_simple_vocab_16e6.txt.gz` from the `open-clip-torch` wheel
(MIT licence; the BPE merges of OpenAI's CLIP). Only the standard library is needed.

The vocabulary is laid out as CLIP lays it out: the 256 byte symbols, the same 256 symbols
ending a word (`</w>`), one token per merge (the first 48,894 merges), then
`<|startoftext|>` (49406) and `<|endoftext|>` (49407): 49,408 tokens. Text is NFC-normalised,
its whitespace runs collapsed to one space and lower-cased; words are split with CLIP's
pattern (contractions, letter runs, single digits, runs of other symbols), mapped byte by
byte to the printable symbols of GPT-2's byte-level scheme, and merged by BPE with `</w>` on
each word's last symbol. Encoding wraps the ids in the start and end tokens.
"""

import gzip
import json
import os
import sys
import tempfile

START = "<|startoftext|>"
END = "<|endoftext|>"
# CLIP keeps the merges on lines 1 .. 48894 of the file (line 0 is a version header), so that
# 2 * 256 byte symbols + 48894 merges + 2 special tokens = 49408.
MERGE_COUNT = 49152 - 256 - 2
VOCAB_SIZE = 49408
# Contractions, letter runs, single digits, runs of anything else but whitespace; the special
# tokens first so that they survive as one piece.
SPLIT_PATTERN = (
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d"
    r"|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
)


def byte_symbols():
    """The 256 byte symbols in CLIP's order: printable Latin-1 bytes stand for themselves,
    the other bytes map to code points from 256 upwards, in byte order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    symbols = [chr(b) for b in printable]
    extra = 0
    for b in range(256):
        if b not in printable:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def read_merges(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = []
    for number, line in enumerate(lines[1 : MERGE_COUNT + 1], start=2):
        parts = line.split()
        if len(parts) != 2:
            raise SystemExit(f"{path}: line {number} is not a merge of two symbols: {line!r}")
        merges.append((parts[0], parts[1]))
    if len(merges) != MERGE_COUNT:
        raise SystemExit(f"{path}: {len(merges)} merges, expected {MERGE_COUNT}")
    return merges


def build(merges):
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges] + [START, END]
    vocab = {}
    for token in tokens:
        if token in vocab:
            raise SystemExit(f"duplicate token {token!r} in the vocabulary")
        vocab[token] = len(vocab)
    if len(vocab) != VOCAB_SIZE:
        raise SystemExit(f"{len(vocab)} tokens, expected {VOCAB_SIZE}")

    def special(token):
        return {
            "id": vocab[token],
            "content": token,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": True,
            "special": True,
        }

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special(START), special(END)],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "NFC"},
                {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
                {"type": "Lowercase"},
            ],
        },
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": SPLIT_PATTERN},
                    "behavior": "Removed",
                    "invert": True,
                },
                {
                    "type": "ByteLevel",
                    "add_prefix_space": False,
                    "trim_offsets": True,
                    "use_regex": False,
                },
            ],
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": START, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": END, "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": START, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": END, "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 0}},
                {"SpecialToken": {"id": END, "type_id": 0}},
            ],
            "special_tokens": {
                START: {"id": START, "ids": [vocab[START]], "tokens": [START]},
                END: {"id": END, "ids": [vocab[END]], "tokens": [END]},
            },
        },
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": False,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": END,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "</w>",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [[a, b] for a, b in merges],
        },
    }


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: clip-tokenizer.py BPE_MERGES_GZ OUTPUT_JSON")
    source, output = sys.argv[1], sys.argv[2]
    tokenizer = build(read_merges(source))
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    # Written beside the target and renamed, so a reader never sees half a file.
    fd, partial = tempfile.mkstemp(dir=directory, prefix=".tokenizer.", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False)
    os.chmod(partial, 0o644)
    os.replace(partial, output)


if __name__ == "__main__":
    main()
