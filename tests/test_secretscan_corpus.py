"""The secret scan on the checked-in corpus (tests/data/secrets/): every real-looking key of
each provider is caught, every look-alike passes (bench/secret_corpus prints the counts)."""
import json
import subprocess
import sys
from pathlib import Path

from spacehooks.push import secretscan, secretshapes

DATA = Path(__file__).parent / "data" / "secrets"
ROOT = Path(__file__).resolve().parents[1]


def _entries(name):
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


def test_every_real_looking_key_is_caught_as_its_provider():
    entries = _entries("keys.jsonl")
    assert {e["kind"] for e in entries} == {kind for kind, _, _ in secretshapes.PATTERNS}
    missed = [e["text"] for e in entries
              if [f.kind for f in secretscan.scan_blob(e["text"].encode())] != [e["kind"]]]
    assert (len(entries), missed) == (720, [])


def test_every_look_alike_passes():
    entries = _entries("lookalikes.jsonl")
    flagged = [e["text"] for e in entries if list(secretscan.scan_blob(e["text"].encode()))]
    assert (len(entries), flagged) == (48, [])


def test_the_corpus_is_what_its_generator_makes_and_the_bench_agrees():
    made = subprocess.run([sys.executable, str(DATA / "make_keys.py")], stdout=subprocess.PIPE, text=True, check=True)
    assert made.stdout == (DATA / "keys.jsonl").read_text()
    bench = subprocess.run([sys.executable, str(ROOT / "bench" / "secret_corpus")], stdout=subprocess.PIPE, text=True)
    assert bench.returncode == 0, bench.stdout
    lines = bench.stdout.splitlines()
    assert lines.count(f"       {'all':28s}  720 / 720") == 1, lines
    assert lines.count(f"       {'all':28s}   48 / 48") == 1, lines
    assert lines[-1] == "-----> OK"


def test_a_look_alike_does_not_hide_a_key_on_the_same_line():
    key = "hf_" + "Qm7Zt2XvK9pLr4WbN8sYc3DjH6fGa1UeT5"
    line = f'css = "sk-toggleable__label-arrow"; token = "{key}"  # not hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n'
    assert [(f.line, f.kind, f.sample) for f in secretscan.scan_blob(line.encode())] == [
        (1, "a Hugging Face token", "hf_Qm7…")]
