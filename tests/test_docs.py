"""The documentation's references hold: APIs, commands, config paths, links.

For every Markdown file of the guide (README.md, docs/, configs/**/README.md):
- every `from bimer_tf... import name` and dotted `bimer_tf.a.b.name` in code
  resolves (the module exists; a name after it is an attribute of it);
- every `python -m bimer_tf.X` names a module that can run (found by
  importlib.util.find_spec, a package with a __main__.py; nothing is run);
- every `configs/...yaml` and `bimer_tf/default_configs/...yaml` exists, and
  a recipe README's bare `NAME.yaml` is in its own folder;
- every relative link (and its #anchor) between Markdown files resolves;
- every config key in code (`--set KEY=...`, `model.speech.type: ...`) is a
  field of `bimer_tf.config.ExperimentConfig`.

Only a reference to an attribute imports its module (`bimer_tf.models`
imports TensorFlow, once per session); modules are found on disk.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest


def _repo_root() -> Path:
    here = Path(__file__).resolve().parent
    while not (here / "setup.cfg").is_file():
        here = here.parent
    return here


REPO_ROOT = _repo_root()
PACKAGE_DIR = REPO_ROOT / "bimer_tf"
DOC_FILES = sorted(
    [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md"), *(REPO_ROOT / "configs").rglob("README.md")]
)

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
FROM_IMPORT = re.compile(r"\bfrom\s+(bimer_tf(?:\.\w+)*)\s+import\s+(\([^)]*\)|[^\n]+)")
DOTTED = re.compile(r"(?<![\w/.-])bimer_tf(?:\.\w+)+")
RUN_MODULE = re.compile(r"python\S*\s+-m\s+(bimer_tf(?:\.\w+)*)(\.<)?")
CONFIG_PATH = re.compile(r"(?<![\w/.-])((?:configs|bimer_tf/default_configs)/[\w./-]*\.yaml)\b")
BARE_YAML = re.compile(r"^[\w.-]+\.yaml$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
PLACEHOLDER = re.compile(r"^[A-Z]+$")  # NAME, X: a stand-in, not a module or file
SET_KEY = re.compile(r"--set\s+([a-z_][\w.]*)=")
CONFIG_KEY = re.compile(r"^((?:audio|spec_augment|text|data|model|trainer|runtime)(?:\.[a-z_]\w*)+)(?:\s*[:=].*)?$")


def _rel(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def _code(text: str) -> list[str]:
    """Fenced blocks and inline code spans of a Markdown text."""
    blocks = [m.group(0) for m in FENCE.finditer(text)]
    prose = FENCE.sub("", text)
    return blocks + INLINE_CODE.findall(prose)


def _collect():
    api, modules, configs, links, keys = [], [], [], [], []
    for doc in DOC_FILES:
        text = doc.read_text(encoding="utf-8")
        where = _rel(doc)
        for code in _code(text):
            for module, names in FROM_IMPORT.findall(code):
                for name in names.split("#")[0].strip("() \n").replace("\n", " ").split(","):
                    name = name.split(" as ")[0].strip()
                    if name:
                        api.append((where, f"{module}.{name}"))
            for match in DOTTED.finditer(code):
                api.append((where, match.group(0)))
            for match in CONFIG_PATH.finditer(code):
                configs.append((where, match.group(1)))
            if doc.parent.parent == REPO_ROOT / "configs" and BARE_YAML.match(code.strip()):
                configs.append((where, _rel(doc.parent / code.strip())))
            keys += [(where, key) for key in SET_KEY.findall(code)]
            if CONFIG_KEY.match(code.strip()):
                keys.append((where, CONFIG_KEY.match(code.strip()).group(1)))
        for match in RUN_MODULE.finditer(text):
            if not match.group(2):
                modules.append((where, match.group(1)))
        for target in LINK.findall(FENCE.sub("", text)):
            if not re.match(r"[a-z]+:", target):
                links.append((where, target))
    unique = lambda items: sorted(set(items))  # noqa: E731
    api = [(w, r) for w, r in unique(api) if not any(PLACEHOLDER.match(p) for p in r.split("."))]
    modules = [(w, m) for w, m in unique(modules) if not PLACEHOLDER.match(m.split(".")[-1])]
    configs = [(w, c) for w, c in unique(configs) if not re.search(r"[A-Z]{2,}", c)]
    sections = ("name", "audio", "spec_augment", "text", "data", "model", "trainer", "runtime")
    keys = [
        (w, k) for w, k in unique(keys)
        if k.split(".")[0] in sections and not any(map(PLACEHOLDER.match, k.split(".")))
    ]
    return api, modules, configs, unique(links), keys


API_REFS, MODULE_REFS, CONFIG_REFS, LINKS, CONFIG_KEYS = _collect()


def _ids(items):
    return [f"{where}:{ref}" for where, ref in items]


def test_the_guide_is_there():
    names = {_rel(doc) for doc in DOC_FILES}
    assert {"README.md", "configs/README.md", "docs/cli.md"} <= names
    # Every collector finds something, so a broken pattern cannot pass silently.
    assert API_REFS and MODULE_REFS and CONFIG_REFS and LINKS and CONFIG_KEYS


def _module_on_disk(dotted: str) -> bool:
    path = PACKAGE_DIR.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.mark.parametrize("where, reference", API_REFS, ids=_ids(API_REFS))
def test_api_reference_resolves(where, reference):
    parts = reference.split(".")
    depth = max(k for k in range(1, len(parts) + 1) if _module_on_disk(".".join(parts[:k])))
    if depth == len(parts):
        return
    module_name = ".".join(parts[:depth])
    obj = importlib.import_module(module_name)
    for i, name in enumerate(parts[depth:], start=depth):
        assert hasattr(obj, name), (
            f"{where} names {reference}, but {'.'.join(parts[:i])} has no attribute {name!r}"
        )
        obj = getattr(obj, name)


@pytest.mark.parametrize("where, module", MODULE_REFS, ids=_ids(MODULE_REFS))
def test_python_m_command_names_a_runnable_module(where, module):
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{where}: `python -m {module}`: no such module"
    if spec.submodule_search_locations is not None:  # a package runs its __main__.py
        assert any(Path(p, "__main__.py").is_file() for p in spec.submodule_search_locations), (
            f"{where}: `python -m {module}`: the package has no __main__.py"
        )


@pytest.mark.parametrize("where, path", CONFIG_REFS, ids=_ids(CONFIG_REFS))
def test_config_path_exists(where, path):
    assert (REPO_ROOT / path).is_file(), f"{where} names {path}, which does not exist"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(FENCE.sub("", doc.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("where, target", LINKS, ids=_ids(LINKS))
def test_relative_link_resolves(where, target):
    source = REPO_ROOT / where
    path, _, anchor = target.partition("#")
    resolved = (source.parent / path).resolve() if path else source
    assert resolved.exists(), f"{where} links to {target}: {resolved} does not exist"
    if anchor and resolved.suffix == ".md":
        assert anchor in _anchors(resolved), (
            f"{where} links to {target}: no heading of {_rel(resolved)} has the anchor #{anchor}"
        )


@pytest.mark.parametrize("where, key", CONFIG_KEYS, ids=_ids(CONFIG_KEYS))
def test_config_key_is_a_config_field(where, key):
    import dataclasses
    import typing

    from bimer_tf.config import ExperimentConfig

    node = ExperimentConfig
    for i, name in enumerate(key.split(".")):
        assert dataclasses.is_dataclass(node), f"{where} names {key}, but {'.'.join(key.split('.')[:i])} is a value"
        fields = {f.name for f in dataclasses.fields(node)}
        assert name in fields, f"{where} names {key}: no field {name!r} (fields: {', '.join(sorted(fields))})"
        node = typing.get_type_hints(node)[name]


@pytest.mark.parametrize("doc", DOC_FILES, ids=[_rel(d) for d in DOC_FILES])
def test_no_citation_of_documents_that_are_not_in_the_repository(doc):
    text = doc.read_text(encoding="utf-8")
    for name in ("DESIGN.md", "STYLE.md"):
        assert name not in text, f"{_rel(doc)} cites {name}, which is not in the repository"
