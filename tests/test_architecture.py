"""The package follows docs/ARCHITECTURE.md: a module imports only modules listed before it."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORT = re.compile(r"^\s*(?:from (spacehooks[\w.]*) import ([\w, ]+)|import (spacehooks[\w.]*))", re.M)


def order():
    """The tables' entries in order: `push/gate.py` names a module, `state/` a whole folder."""
    names = []
    for cell in re.findall(r"^\| (`[^|]+`) \|", (ROOT / "docs" / "ARCHITECTURE.md").read_text(), re.M):
        names += [n.removesuffix(".py").rstrip("/") for n in re.findall(r"`([\w/.]+)`", cell)]
    return names


def entry_for(key: str, rank: dict) -> str:
    """The table entry holding a module key such as `push/gate`: itself, else its folder."""
    parts = key.split("/")
    for i in range(len(parts), 0, -1):
        if "/".join(parts[:i]) in rank:
            return "/".join(parts[:i])
    return key


def module_key(path: Path) -> str:
    parts = path.relative_to(ROOT / "spacehooks").with_suffix("").parts
    return "/".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set:
    found = set()
    for m in IMPORT.finditer(path.read_text()):
        target = m.group(1) or m.group(3)
        if m.group(1):
            for n in m.group(2).split(","):
                name = n.split(" as ")[0].strip()
                # `from spacehooks.push import gate` names a module; `from spacehooks.push.gate import X` does not
                sub = ROOT / Path(*target.split(".")) / f"{name}.py"
                found.add(f"{target}.{name}" if sub.exists() or (sub.parent / name).is_dir() else target)
        else:
            found.add(target)
    return {"/".join(t.split(".")[1:]) for t in found if t != "spacehooks"}


def test_the_folders_are_the_stages_of_the_flow():
    # the layout shows push -> queue -> build -> run -> route: each folder's modules are listed
    # together, and the folders come in the flow's order
    folders = [name.split("/")[0] for name in order() if "/" in name or name in ("state", "gateway", "engine")]
    seen = list(dict.fromkeys(folders))
    assert seen == ["state", "access", "git", "push", "queue", "engine", "build", "run", "admin", "gateway"]
    assert all(folders[i] == folders[i + 1] or folders[i + 1] not in folders[:i + 1] for i in range(len(folders) - 1))


def test_every_module_is_listed_and_imports_only_earlier_ones():
    rank = {name: i for i, name in enumerate(order())}
    problems = []
    for path in sorted((ROOT / "spacehooks").rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py") and (path.parent.name == "spacehooks" or not imports(path)):
            continue
        mod = entry_for(module_key(path), rank)
        assert mod in rank, f"{path} is not in docs/ARCHITECTURE.md"
        for dep in {entry_for(d, rank) for d in imports(path)} - {mod}:
            if dep not in rank:
                problems.append(f"{path.name} imports unlisted {dep}")
            elif rank[dep] > rank[mod] and {mod, dep} != {"admin/install", "admin/install_gitolite"}:
                problems.append(f"{path.relative_to(ROOT)} ({mod}) imports {dep}, which comes later")
    assert problems == []


def test_no_process_wide_umask_changes():
    # serve runs threads: a umask set by one changes the mode of what the others create
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "spacehooks").rglob("*.py")
                 if re.search(r"\bos\.umask\(|\bumask\(", p.read_text())]
    assert offenders == []


def test_click_only_in_the_cli():
    # SpaceError once subclassed click's exception, so the push path needed lazy imports
    users = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "spacehooks").rglob("*.py")
                   if re.search(r"^\s*(import click|from click)", p.read_text(), re.M))
    assert users == ["spacehooks/cli.py", "spacehooks/cliadmin.py", "spacehooks/clihost.py", "spacehooks/clipeople.py",
                     "spacehooks/clistorage.py"]


def test_sql_only_in_the_state_package():
    # one place to read every query and transaction (and to swap the store for another one)
    state = ROOT / "spacehooks" / "state"
    others = [p for p in (ROOT / "spacehooks").rglob("*.py") if state not in p.parents]
    importers = sorted(str(p.relative_to(ROOT)) for p in others
                       if re.search(r"^\s*(import sqlite3|from sqlite3)", p.read_text(), re.M))
    executors = sorted(str(p.relative_to(ROOT)) for p in others
                       if re.search(r"\.(execute|executemany|executescript)\(", p.read_text()))
    assert (importers, executors) == ([], [])
    assert any(re.search(r"^import sqlite3", p.read_text(), re.M) for p in state.glob("*.py"))


def _stage_literals(path: Path) -> list[str]:
    import ast
    import io
    import tokenize
    from spacehooks.stages import STAGES
    found = []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type == tokenize.STRING and not token.string.lstrip("rbuRBU").startswith(("f", "F")):
            try:
                value = ast.literal_eval(token.string)
            except (ValueError, SyntaxError):
                continue
            if value in STAGES:
                found.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {token.string}")
    return found


def test_stages_only_change_through_the_stage_table():
    # one declared table of moves (stages.MOVES): a stage written elsewhere would bypass it
    state = ROOT / "spacehooks" / "state"
    others = [p for p in sorted((ROOT / "spacehooks").rglob("*.py"))
              if state not in p.parents and p != ROOT / "spacehooks" / "stages.py"]
    writes = [str(p.relative_to(ROOT)) for p in others
              if re.search(r"update_space\((?:[^()]|\([^()]*\))*\bstage\s*=", p.read_text())]
    literals = [hit for p in others + sorted(state.glob("*.py")) for hit in _stage_literals(p)]
    from spacehooks.stages import STAGES
    gateway = ROOT / "spacehooks" / "gateway"
    pages = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in sorted([*gateway.rglob("*.html"), *gateway.rglob("*.js")])
             for m in re.finditer(r"[\"'](" + "|".join(STAGES) + r")[\"']", p.read_text())]
    assert (writes, literals, pages) == ([], [], [])


def test_space_defaults_are_derived_in_one_place():
    # app ports and "is static" come from spacekeys.app_port / is_static, so they cannot drift apart
    offenders = sorted(f"{p.relative_to(ROOT)}: {m.group(0)}" for p in (ROOT / "spacehooks").rglob("*.py")
                       if p.name != "spacekeys.py"
                       for m in re.finditer(r"\b(?:7860|8501)\b|==\s*[\"']static[\"']|[\"']static[\"']\s*==", p.read_text()))
    assert offenders == []
def _importers(module: str, folders=("spacehooks", "tests", "bench")) -> list[str]:
    pattern = re.compile(rf"^\s*(import {module}\b|from {module}\b)", re.M)
    return sorted(str(p.relative_to(ROOT)) for folder in folders for p in (ROOT / folder).rglob("*")
                  if p.is_file() and (p.suffix == ".py" or p.parent.name == "bench" and not p.suffix)
                  and pattern.search(p.read_text(errors="replace")))


def test_podman_py_only_in_the_podman_engine():
    # the engine seam: everything else asks engine.get(settings) in plain data, so a second
    # engine (Kubernetes) needs no change to its callers
    assert _importers("podman") == ["spacehooks/engine/podman.py"]


def test_pygit2_only_in_gitrepo():
    assert _importers("pygit2", ("spacehooks",)) == ["spacehooks/git/repo.py"]


def test_callers_use_the_engine_interface_not_the_podman_engine():
    # engine.get(settings) picks the engine; a module naming the Podman one would tie itself to it
    engine = ROOT / "spacehooks" / "engine"
    pattern = re.compile(r"^\s*(from spacehooks\.engine(\.podman\w*)? import .*\bpodman\w*|import spacehooks\.engine\.podman)",
                         re.M)
    users = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "spacehooks").rglob("*.py")
                   if engine not in p.parents and pattern.search(p.read_text()))
    assert users == []
