#!/usr/bin/env python3
"""Writes keys.jsonl: fake keys with each provider's real structure, random where real keys are
random (none was ever issued: they are drawn here). Fixed seed, so the file is reproducible:

    python3 tests/data/secrets/make_keys.py > tests/data/secrets/keys.jsonl
"""
import base64
import json
import random
import string

PER_SHAPE = 40
rng = random.Random(20261129)
B62 = string.ascii_letters + string.digits
B64URL = B62 + "-_"
B64 = B62 + "+/"
HEX = "0123456789abcdef"
B32 = string.ascii_uppercase + "234567"


def draw(alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def pem(label, size):
    body = base64.b64encode(rng.randbytes(size)).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


SHAPES = [  # (kind, how it appears in a file)
    ("a Hugging Face token", lambda: f'HF_TOKEN = "hf_{draw(B62, 34)}"'),
    ("an Anthropic API key", lambda: f'client = Anthropic(api_key="sk-ant-api03-{draw(B64URL, 93)}AA")'),
    ("an Anthropic API key", lambda: f"ANTHROPIC_ADMIN_KEY=sk-ant-admin01-{draw(B64URL, 93)}AA"),
    ("an OpenAI-style API key", lambda: f'openai.api_key = "sk-proj-{draw(B64URL, 156)}"'),
    ("an OpenAI-style API key", lambda: f"OPENAI_API_KEY=sk-{draw(B62, 20)}T3BlbkFJ{draw(B62, 20)}"),
    ("an OpenAI-style API key", lambda: f"key: sk-svcacct-{draw(B64URL, 156)}"),
    ("an AWS access key id", lambda: f"aws_access_key_id = AKIA{draw(B32, 16)}"),
    ("an AWS access key id", lambda: f'"AccessKeyId": "ASIA{draw(B32, 16)}",'),
    ("an AWS secret access key", lambda: f"aws_secret_access_key = {draw(B64, 40)}"),
    ("a GitHub token", lambda: f"token = 'ghp_{draw(B62, 36)}'"),
    ("a GitHub token", lambda: f"GH_TOKEN=gho_{draw(B62, 36)}"),
    ("a GitHub token", lambda: f"github_pat_11{draw(B32, 20)}_{draw(B62, 59)}"),
    ("a private key", lambda: pem("RSA PRIVATE KEY", 1190)),
    ("a private key", lambda: pem("OPENSSH PRIVATE KEY", 400)),
    ("a private key", lambda: pem("EC PRIVATE KEY", 121)),
    # a service account file: the key is a JSON string with \n written out
    ("a private key", lambda: json.dumps({"private_key": pem("PRIVATE KEY", 1218)})[1:-1]),
    ("a Slack token", lambda: f"SLACK_BOT_TOKEN=xoxb-{draw('0123456789', 12)}-{draw('0123456789', 13)}-{draw(B62, 24)}"),
    ("a Slack token", lambda: f"xoxp-{draw('0123456789', 12)}-{draw('0123456789', 12)}-{draw('0123456789', 13)}-{draw(HEX, 32)}"),
]

for kind, make in SHAPES:
    for _ in range(PER_SHAPE):
        print(json.dumps({"kind": kind, "text": make()}, ensure_ascii=False))
