"""What a real key of each provider looks like: its structure (a regex) and, for its random
part, the statistics of random text. Placeholders (`sk-ant-YOUR_ANTHROPIC_API_KEY`,
`hf_xxxx…`, `AKIAIOSFODNN7EXAMPLE`) and identifiers (scikit-learn's CSS class
`sk-toggleable__label-arrow`) match the structure but not the statistics.

Each rule is general (no list of single strings): a key's random part is drawn uniformly from
its alphabet, so it has high entropy, mixes character classes, does not repeat itself, holds
no run of one character or of consecutive characters, reads as no words, and says no
placeholder word. tests/data/secrets/ holds the corpus the thresholds are checked on
(bench/secret_corpus prints the counts).
"""
from __future__ import annotations

import math
import re
from collections import Counter

# (kind, regex, how its random part is checked); order matters: the first alternative wins.
# The group named `body` is the random part.
PATTERNS = [
    ("a Hugging Face token", r"\bhf_(?P<body>[A-Za-z0-9]{30,40})\b", "mixed"),
    ("an Anthropic API key", r"\bsk-ant-(?:(?:api|admin)\d\d-)?(?P<body>[A-Za-z0-9_-]{20,})", "mixed"),
    ("an OpenAI-style API key", r"\bsk-(?:proj-|svcacct-|admin-)?(?P<body>[A-Za-z0-9_-]{20,})", "mixed"),
    ("an AWS access key id", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)(?P<body>[A-Z0-9]{16})\b", "upper"),
    ("an AWS secret access key", r"(?i:aws_secret_access_key)\s*[:=]\s*['\"]?(?P<body>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])", "mixed"),
    ("a GitHub token", r"\b(?:gh[pousr]_|github_pat_)(?P<body>[A-Za-z0-9_]{36,})\b", "mixed"),
    # a key block, not a mention of its header: base64 must follow (after optional PEM headers;
    # `\n` written out covers keys inside JSON strings)
    ("a private key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[ \t]*(?:\r?\n|\\n)"
                      r"(?:[A-Za-z-]+:[^\n\\]*(?:\r?\n|\\n))*(?:\r?\n|\\n)?(?P<body>[A-Za-z0-9+/=]{40,})", "block"),
    # bot, user and app tokens: numeric ids, then the random part
    ("a Slack token", r"\bxox[abposr]-(?:[0-9]+-){1,3}(?P<body>[A-Za-z0-9]{16,})", "mixed"),
]

# Words that mark a placeholder. The long ones decide alone (a random key holds one by chance
# less than once in 10^9); the short ones only count towards explained_share.
STRONG_WORDS = re.compile(r"example|sample|placeholder|replace|redacted|changeme|insert", re.I)
PLACEHOLDER_WORDS = re.compile(r"your|here|dummy|fake|token|secret|apikey|api_key|xxxx|mykey|goes", re.I)
# ThreeOrMoreWords, as identifiers are written: each a capital, then lower case with a vowel
CAMEL = re.compile(r"(?:[A-Z](?=[a-z]{2})[b-df-hj-np-tv-z]*[aeiou][a-z]*){3,}")
WORDLIKE = re.compile(r"[A-Z]?[a-z]{3,}")
VOWELS = re.compile("[aeiouAEIOU]")
SEPARATORS = re.compile(r"[_\-/+=]")
MIN_ENTROPY = 2.5           # bits per character
MAX_EXPLAINED = 0.6         # see explained_share


def entropy(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


def _smallest_period(text: str) -> int:
    # prefix function (KMP): text repeats a block of n - fail[-1] characters
    n = len(text)
    fail = [0] * n
    k = 0
    for i in range(1, n):
        while k and text[i] != text[k]:
            k = fail[k - 1]
        if text[i] == text[k]:
            k += 1
        fail[i] = k
    return n - fail[-1] if n else 0


def _mark_sequences(text: str, covered: bytearray) -> None:
    lowered = text.lower()
    start = 0
    for i in range(1, len(lowered) + 1):
        if i < len(lowered) and ord(lowered[i]) == ord(lowered[i - 1]) + 1:
            continue
        if i - start >= 3:
            covered[start:i] = b"\x01" * (i - start)
        start = i


def explained_share(text: str) -> float:
    """Share of the characters that a placeholder's parts explain: placeholder words, words
    (runs of 4+ letters, lower case after an optional capital, a third of them vowels;
    random letters have about one vowel in five), runs of
    one character, runs of consecutive ones (abc, 123). A random key: about a tenth."""
    covered = bytearray(len(text))
    spans = [m.span() for m in PLACEHOLDER_WORDS.finditer(text)]
    spans += [m.span() for m in re.finditer(r"(.)\1{2,}", text)]
    spans += [m.span() for m in CAMEL.finditer(text)]
    spans += [m.span() for m in WORDLIKE.finditer(text) if len(m.group()) >= 4 and len(VOWELS.findall(m.group())) >= len(m.group()) / 3]
    for start, end in spans:
        covered[start:end] = b"\x01" * (end - start)
    _mark_sequences(text, covered)
    return sum(covered) / len(text) if text else 0.0


def why_not_a_key(body: str, check: str) -> str | None:
    """None when `body` looks like a key's random part; else the reason it does not."""
    if check == "block":
        return None  # DER in base64 has fixed runs (AAAA…); a header followed by it is a key
    if STRONG_WORDS.search(body):
        return "placeholder word"
    core = SEPARATORS.sub("", body)
    if len(core) < 16:
        return "too short"
    if entropy(core) < MIN_ENTROPY:
        return "low entropy"
    if _smallest_period(core) <= len(core) // 2:
        return "repeats itself"
    if explained_share(core) > MAX_EXPLAINED:
        return "placeholder words, runs or sequences"
    if check != "upper" and sum(bool(re.search(rx, core)) for rx in ("[a-z]", "[A-Z]", "[0-9]")) < 2:
        # AWS ids are upper case and digits only, and may well lack digits
        return "one character class (an identifier or a word)"
    return None
