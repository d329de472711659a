"""The README schema: real-world READMEs accepted, a corpus of malformed ones refused
with exact messages, and no input crashing the parser or running long."""
import codecs
import time

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from spacehooks.build import builder
from spacehooks.push import depfiles, spaceconfig


def parse(text):
    return spaceconfig.parse(text.encode() if isinstance(text, str) else text)


def msgs(cfg):
    return [str(p) for p in cfg.errors]


REAL_WORLD = [
    # unquoted versions read as written
    ("---\nsdk: gradio\nsdk_version: 4.0\npython_version: 3.10\n---\n", {"sdk_version": "4.0", "python_version": "3.10"}),
    # CRLF, BOM, closing --- as the last line without newline
    ("\ufeff---\r\ntitle: Crlf\r\nsdk: static\r\n---", {"title": "Crlf"}),
    # comments and blank lines inside, flow lists, folded values, non-Latin text
    ("---\n# a comment\n\ntitle: 日本語のデモ\nsdk: gradio\ntags: [a, b]\nshort_description: >-\n  folded\n  text\n---\n",
     {"title": "日本語のデモ", "tags": ["a", "b"], "short_description": "folded text"}),
    # emoji with variation selector, ZWJ sequence, two emoji, keycap, newer emoji
    ("---\nemoji: 🛡️\nsdk: static\n---\n", {"emoji": "🛡️"}),
    ("---\nemoji: 💇‍♀️\nsdk: static\n---\n", {"emoji": "💇‍♀️"}),
    ("---\nemoji: 🐢🚀\nsdk: static\n---\n", {"emoji": "🐢🚀"}),
    ("---\nemoji: 1️⃣\nsdk: static\n---\n", {"emoji": "1️⃣"}),
    ("---\nemoji: \U0001FAE9\nsdk: static\n---\n", {"emoji": "\U0001FAE9"}),
    # docker Spaces that also carry sdk_version or app_file; undocumented keys
    ("---\nsdk: docker\nsdk_version: 1.0\napp_file: main.py\ndescription: x\nlanguage: en\n---\n", {"sdk": "docker"}),
    ("---\nsdk: static\ncustom_headers:\n  cross-origin-embedder-policy: require-corp\n  cross-origin-opener-policy: same-origin\n---\n",
     {"custom_headers": {"cross-origin-embedder-policy": "require-corp", "cross-origin-opener-policy": "same-origin"}}),
    ("---\nsdk: gradio\nhf_oauth: true\nhf_oauth_scopes: [email, read-repos]\nhf_oauth_expiration_minutes: 43200\nhf_oauth_authorized_org: [org1, org2]\n---\n",
     {"hf_oauth_expiration_minutes": 43200}),
    ("---\nsdk: gradio\npreload_from_hub:\n  - user/model\n  - user/model config.json,model.safetensors\n  - user/m2 a.bin 0123456789abcdef\n---\n",
     {"preload_from_hub": ["user/model", "user/model config.json,model.safetensors", "user/m2 a.bin 0123456789abcdef"]}),
    ("---\nsdk: gradio\nstartup_duration_timeout: 1h30m\nbase_path: /docs\nheader: mini\nfullWidth: false\nlicense: apache-2.0\n---\n",
     {"startup_duration_timeout": "1h30m", "fullWidth": False}),
]


@pytest.mark.parametrize("text,expected", REAL_WORLD)
def test_real_world_readmes_are_accepted(text, expected):
    cfg = parse(text)
    assert msgs(cfg) == []
    for key, value in expected.items():
        assert cfg.get(key) == value


COLORS = "[red, yellow, green, blue, indigo, purple, pink, gray]"
MALFORMED = [
    ("no block", "# Just a title\n", ['README.md: has no YAML metadata block: start the file with a block between "---" lines that sets at least "sdk"']),
    ("unclosed", "---\nsdk: gradio\n", ["README.md: the YAML block opened on line 1 is never closed: add a line with --- after it"]),
    ("empty block", "---\n---\n", ['README.md:1: YAML metadata block is empty: set at least "sdk"']),
    ("list root", "---\n- a\n- b\n---\n", ["README.md:2: YAML metadata block must be a mapping of keys to values"]),
    ("scalar root", "---\njust text\n---\n", ["README.md:2: YAML metadata block must be a mapping of keys to values"]),
    ("bad indent", "---\nsdk: gradio\n  title: x\n---\n", ["README.md:3: invalid YAML: mapping values are not allowed here"]),
    ("tab", "---\nsdk:\tgradio\n\ttitle: x\n---\n", ["README.md:2: invalid YAML: found character '\\t' that cannot start any token"]),
    ("unclosed quote", '---\ntitle: "abc\nsdk: gradio\n---\n', ["README.md:3: invalid YAML: found unexpected end of stream (while scanning a quoted scalar that starts on line 2)"]),
    ("unclosed flow", "---\nsdk: gradio\ntags: [a, b\n---\n", ["README.md:3: invalid YAML: expected ',' or ']', but got '<stream end>'"]),
    ("duplicate key", "---\nsdk: gradio\ntitle: a\ntitle: b\n---\n", ['README.md:4: "title" is set twice (first on line 3)']),
    ("no sdk", "---\ntitle: x\n---\n", ['README.md:2: "sdk" is required: one of [gradio, streamlit, docker, static]']),
    ("sdk unknown", "---\nsdk: flask\n---\n", ['README.md:2: "sdk" must be one of [gradio, streamlit, docker, static] (found "flask")']),
    ("sdk list", "---\nsdk: [gradio]\n---\n", ['README.md:2: "sdk" must be a string (found a list)']),
    ("sdk null", "---\nsdk:\n---\n", ['README.md:2: "sdk" must be a string (found nothing)']),
    ("colorFrom hex", "---\nsdk: static\ncolorFrom: '#ff0000'\n---\n", [f'README.md:3: "colorFrom" must be one of {COLORS} (found "#ff0000")']),
    ("colorTo case", "---\nsdk: static\ncolorTo: Red\n---\n", [f'README.md:3: "colorTo" must be one of {COLORS} (found "Red")']),
    ("emoji text", "---\nsdk: static\nemoji: rocket\n---\n", ['README.md:3: "emoji" must contain emoji only (found "rocket")']),
    ("emoji mixed", "---\nsdk: static\nemoji: 🚀 go\n---\n", ['README.md:3: "emoji" must contain emoji only (found "🚀 go")']),
    ("emoji empty", "---\nsdk: static\nemoji: ''\n---\n", ['README.md:3: "emoji" must be one or a few emoji (found "")']),
    ("python 2", "---\nsdk: gradio\npython_version: 2.7\n---\n", ['README.md:3: "python_version" must be 3.x or 3.x.x (found "2.7")']),
    ("python word", "---\nsdk: gradio\npython_version: latest\n---\n", ['README.md:3: "python_version" must be 3.x or 3.x.x (found "latest")']),
    ("sdk_version word", "---\nsdk: gradio\nsdk_version: latest\n---\n", ['README.md:3: "sdk_version" must be a version such as 4.44.1 (found "latest")']),
    ("app_port string", "---\nsdk: docker\napp_port: http\n---\n", ['README.md:3: "app_port" must be a whole number (found "http")']),
    ("app_port range", "---\nsdk: docker\napp_port: 70000\n---\n", ['README.md:3: "app_port" must be between 1 and 65535 (found 70000)']),
    ("app_port bool", "---\nsdk: docker\napp_port: true\n---\n", ['README.md:3: "app_port" must be a whole number (found true)']),
    ("base_path", "---\nsdk: gradio\nbase_path: docs\n---\n", ['README.md:3: "base_path" must be a path starting with / (found "docs")']),
    ("fullWidth string", "---\nsdk: gradio\nfullWidth: 'true'\n---\n", ['README.md:3: "fullWidth" must be true or false (found "true")']),
    ("pinned number", "---\nsdk: gradio\npinned: 1\n---\n", ['README.md:3: "pinned" must be true or false (found "1")']),
    ("header", "---\nsdk: gradio\nheader: big\n---\n", ['README.md:3: "header" must be one of [mini, default] (found "big")']),
    ("short_description", "---\nsdk: gradio\nshort_description: " + "y" * 61 + "\n---\n", ['README.md:3: "short_description" must be at most 60 characters (found 61)']),
    ("thumbnail", "---\nsdk: gradio\nthumbnail: ftp://x/y.png\n---\n", ['README.md:3: "thumbnail" must be an http(s) URL (found "ftp://x/y.png")']),
    ("license", "---\nsdk: gradio\nlicense: Apache 2.0\n---\n", ['README.md:3: "license" must be a lowercase license identifier such as apache-2.0 or mit (found "Apache 2.0")']),
    ("hardware", "---\nsdk: gradio\nsuggested_hardware: h100\n---\n", ['README.md:3: "suggested_hardware" must be one of [cpu-basic, cpu-upgrade, t4-small, t4-medium, l4x1, l4x4, l40sx1, l40sx4, l40sx8, a10g-small, a10g-large, a10g-largex2, a10g-largex4, a100-large, a100x4, a100x8] (found "h100")']),
    ("storage", "---\nsdk: gradio\nsuggested_storage: huge\n---\n", ['README.md:3: "suggested_storage" must be one of [small, medium, large] (found "huge")']),
    ("duration", "---\nsdk: gradio\nstartup_duration_timeout: 30 minutes\n---\n", ['README.md:3: "startup_duration_timeout" must be a duration such as 30m, 1h or 1h30m (found "30 minutes")']),
    ("duration number", "---\nsdk: gradio\nstartup_duration_timeout: 30\n---\n", ['README.md:3: "startup_duration_timeout" must be a duration such as 30m, 1h or 1h30m (found "30")']),
    ("headers not map", "---\nsdk: gradio\ncustom_headers: [a]\n---\n", ['README.md:3: "custom_headers" must be a mapping of header names to values (found a list)']),
    ("headers other", "---\nsdk: gradio\ncustom_headers:\n  x-frame-options: deny\n---\n", ['README.md:3: "custom_headers" may only set [cross-origin-embedder-policy, cross-origin-opener-policy, cross-origin-resource-policy] (found "x-frame-options")']),
    ("headers upper value", "---\nsdk: gradio\ncustom_headers:\n  cross-origin-resource-policy: Cross-Origin\n---\n", ['README.md:3: "custom_headers" cross-origin-resource-policy must be one of [same-site, same-origin, cross-origin] (found "Cross-Origin")']),
    ("oauth minutes", "---\nsdk: gradio\nhf_oauth_expiration_minutes: 50000\n---\n", ['README.md:3: "hf_oauth_expiration_minutes" must be between 1 and 43200 (found 50000)']),
    ("oauth bool", "---\nsdk: gradio\nhf_oauth: yes please\n---\n", ['README.md:3: "hf_oauth" must be true or false (found "yes please")']),
    ("oauth scopes", "---\nsdk: gradio\nhf_oauth_scopes: [Email Address]\n---\n", ['README.md:3: "hf_oauth_scopes" item 1 must be a scope name such as email or read-repos (found "Email Address")']),
    ("models nested", "---\nsdk: gradio\nmodels:\n  - {a: b}\n---\n", ['README.md:3: "models" item 1 must be a string (found a mapping)']),
    ("tags map", "---\nsdk: gradio\ntags: {a: b}\n---\n", ['README.md:3: "tags" must be a list of strings (found a mapping)']),
    ("preload", "---\nsdk: gradio\npreload_from_hub: ['a/b c d e f']\n---\n", ['README.md:3: "preload_from_hub" item 1 must be `repo`, `repo f1,f2` or `repo f1,f2 sha` (found "a/b c d e f")']),
    ("app_file absolute", "---\nsdk: gradio\napp_file: /etc/passwd\n---\n", ['README.md:3: "app_file" must be relative to the repository root, not an absolute path (found "/etc/passwd")']),
    ("app_file dotdot", "---\nsdk: gradio\napp_file: src/../../x.py\n---\n", ['README.md:3: "app_file" must stay inside the repository (no ".." parts) (found "src/../../x.py")']),
    ("app_file backslash", "---\nsdk: gradio\napp_file: ..\\x.py\n---\n", ['README.md:3: "app_file" must stay inside the repository (no ".." parts) (found "..\\x.py")']),
    ("deep nesting", "---\nsdk: gradio\nx: " + "[" * 30 + "]" * 30 + "\n---\n", ['README.md:3: "x" is nested more than 20 levels deep']),
    ("binary", b"---\nsdk: gradio\n\x00\x01\x02---\n", ["README.md: is a binary file; the README must be UTF-8 text"]),
    ("latin-1", "---\ntitle: caf\xe9\nsdk: gradio\n---\n".encode("latin-1"), ["README.md: is not valid UTF-8 (line 2, byte 0xe9); save it as UTF-8"]),
    ("non-scalar key", "---\n? [a, b]\n: c\nsdk: gradio\n---\n", ["README.md:2: keys must be plain names"]),
    ("huge block", "---\nsdk: gradio\nx: '" + "a" * 70000 + "'\n---\n", ["README.md:2: YAML metadata block is larger than 64 KiB"]),
    ("python tag", "---\nsdk: gradio\nx: !!python/object/apply:os.system ['id']\n---\n", ['README.md:3: "x" uses the YAML tag !!python/object/apply:os.system, which is not allowed']),
]


@pytest.mark.parametrize("name,text,expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_readmes_are_refused_with_exact_messages(name, text, expected):
    assert msgs(parse(text)) == expected


def test_corpus_is_large_enough():
    assert len(MALFORMED) + len(BAD_DEPS) >= 40


def test_yaml_alias_bomb_is_bounded():
    bomb = "---\nsdk: static\na: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" \
           "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n---\n"
    start = time.monotonic()
    cfg = parse(bomb)
    assert time.monotonic() - start < 2
    assert 'README.md:6: "d" is too large (more than 5000 values; YAML aliases count each time they are used)' in msgs(cfg)


def test_unknown_keys_and_sdk_specific_keys_are_warnings():
    cfg = parse("---\nsdk: gradio\napp_port: 8000\napp_build_command: npm run build\nfoo: 1\n---\n")
    assert msgs(cfg) == []
    assert [str(w) for w in cfg.warnings] == [
        'README.md:5: unknown key "foo" is ignored',
        'README.md:3: "app_port" is only used with sdk docker; ignored for sdk gradio',
        'README.md:4: "app_build_command" is only used with sdk static; ignored for sdk gradio',
    ]


BAD_DEPS = [
    ("packages.txt", b"curl; rm -rf /\n", ["packages.txt:1: 'curl;' is not a Debian package name; write one package name per line (lowercase letters, digits, + - .), comments start with #"]),
    ("packages.txt", b"$(id)\n", ["packages.txt:1: '$(id)' is not a Debian package name; write one package name per line (lowercase letters, digits, + - .), comments start with #"]),
    ("packages.txt", b"`id`\n", ["packages.txt:1: '`id`' is not a Debian package name; write one package name per line (lowercase letters, digits, + - .), comments start with #"]),
    ("packages.txt", b"ffmpeg | tee\n", ["packages.txt:1: '|' is not a Debian package name; write one package name per line (lowercase letters, digits, + - .), comments start with #"]),
    ("packages.txt", b"-o APT::Get::x=1\n", ["packages.txt:1: '-o' is not a Debian package name; write one package name per line (lowercase letters, digits, + - .), comments start with #"]),
    ("packages.txt", b"Ffmpeg\n", ["packages.txt:1: 'Ffmpeg' is not a Debian package name; write one package name per line (lowercase letters, digits, + - .), comments start with #"]),
    ("packages.txt", b"\x00\x01", ["packages.txt: is a binary file; it must be text with one entry per line"]),
    ("packages.txt", b"caf\xe9\n", ["packages.txt:1: is not valid UTF-8 (byte 0xe9); save it as UTF-8"]),
    ("requirements.txt", b"--index-url=https://x/simple\n", ["requirements.txt:1: --index-url is not allowed: it changes where packages come from; the server's administrator sets the package index (build.pip_index_url)"]),
    ("requirements.txt", b"numpy --extra-index-url https://x\n", ["requirements.txt:1: --extra-index-url is not allowed: it changes where packages come from; the server's administrator sets the package index (build.pip_index_url)"]),
    ("requirements.txt", b"-r /etc/passwd\n", ["requirements.txt:1: -r /etc/passwd: absolute paths read outside the repository; use a path relative to the repository"]),
    ("requirements.txt", b"-r ../secrets.txt\n", ['requirements.txt:1: -r ../secrets.txt: the path must stay inside the repository (no ".." parts)']),
    ("requirements.txt", b"-e /opt/src\n", ["requirements.txt:1: -e /opt/src: absolute paths read outside the repository; use a path relative to the repository"]),
    ("requirements.txt", b"--prefix /usr\n", ["requirements.txt:1: option --prefix is not allowed in a Space's requirements; remove it"]),
    ("requirements.txt", b"numpy===\n", ["requirements.txt:1: 'numpy===' is not a valid requirement; write a package name with an optional version, e.g. numpy==1.26.4"]),
]


@pytest.mark.parametrize("name,data,expected", BAD_DEPS)
def test_malformed_dependency_files(name, data, expected):
    if name == "packages.txt":
        got = depfiles.check_packages(data)
    else:
        got = depfiles.check_requirements(data, name, lambda p: False)
    assert [str(p) for p in got] == expected


def test_good_dependency_files():
    assert depfiles.check_packages(b"# system\nffmpeg\n\nlibgl1 libglib2.0-0  # gl\ng++\npython3-dev:amd64\n") == []
    reqs = (b"numpy==1.26.4\ntorch>=2; python_version >= '3.9'\n-r base.txt\ngit+https://github.com/a/b.git@v1#egg=b\n"
            b"pkg[extra]~=1.0 \\\n    --hash=sha256:abcd\n--prefer-binary\n./wheels/x.whl\n-e .\n")
    assert depfiles.check_requirements(reqs, "requirements.txt", lambda p: p in {"base.txt", "wheels/x.whl"}) == []


def test_requirements_are_read_in_the_encoding_pip_uses():
    # pip's auto_decode: a BOM, else a PEP 263 coding line in the first two lines, else UTF-8
    # (a UTF-32-LE mark starts with UTF-16-LE's: pip, checking UTF-16 first, misreads such a file)
    for bom, encoding in ((b"", "utf-16"), (codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF32_BE, "utf-32-be")):
        data = bom + "numpy\n-r other.txt\n".encode(encoding)
        assert depfiles.check_requirements(data, "requirements.txt", lambda p: p == "other.txt") == []
        assert set(builder.requirement_files({"requirements.txt": data, "other.txt": b"x\n"}.get,
                                             "requirements.txt")) == {"requirements.txt", "other.txt"}
    assert [str(p) for p in depfiles.check_requirements(b"# coding: no-such-codec\nnumpy\n", "r.txt",
                                                        lambda p: False)] == [
        "r.txt: is not valid no-such-codec, the encoding it names; save it as UTF-8"]
    # packages.txt is not pip's: UTF-8 (with or without BOM) only, as before
    assert [str(p) for p in depfiles.check_packages("git\n".encode("utf-16"))] == [
        "packages.txt: is a binary file; it must be text with one entry per line"]


@hsettings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=2000), st.text(max_size=2000).map(lambda t: ("---\n" + t + "\n---\n").encode())))
def test_no_input_crashes_or_runs_long(data):
    start = time.monotonic()
    cfg = spaceconfig.parse(data)
    depfiles.check_packages(data)
    depfiles.check_requirements(data, "requirements.txt", lambda p: False)
    assert time.monotonic() - start < 1.0
    assert isinstance(cfg.errors, list)


YAMLISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=20)


@hsettings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([k.name for k in spaceconfig.KEYS] + ["other"]), YAMLISH, max_size=8))
def test_any_structured_block_gives_values_or_messages(block):
    import yaml
    text = "---\n" + yaml.safe_dump(block, allow_unicode=True) + "---\n"
    cfg = spaceconfig.parse(text.encode())
    for problem in cfg.errors:
        assert problem.file == "README.md" and str(problem).startswith("README.md")
