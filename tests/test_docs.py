"""The docs stay true to the code: every environment variable read is documented in
docs/operations.md, every module is in docs/architecture.md's tree, the README stays a short front
door, and every link between them resolves."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGES = ("search_engine", "lfl_web")
#: Functions of lfl_web.env that read the variable named by their first argument.
ENV_READERS = {"env_bool", "env_list", "env_number"}
#: The five pages the README sends a reader on to.
PAGES = ("operations.md", "configuration.md", "methods.md", "api.md", "architecture.md")


# --------------------------------------------------------------------------- environment variables

def _is_environ(node: ast.AST) -> bool:
    """`os.environ` (or a bare `environ`)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ")


def _first_string(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def variables_read_by_python(path: Path) -> set[str]:
    """Names of the environment variables a Python file reads: os.environ.get/[...]/setdefault/pop,
    os.getenv, `"X" in os.environ`, and lfl_web.env's readers."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            environ_method = isinstance(func, ast.Attribute) and _is_environ(func.value) and func.attr in (
                "get", "setdefault", "pop")
            getenv = isinstance(func, ast.Attribute) and func.attr == "getenv"
            reader = isinstance(func, ast.Name) and func.id in ENV_READERS
            if (environ_method or getenv or reader) and _first_string(node):
                found.add(_first_string(node))
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                found.add(node.slice.value)
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and any(
                isinstance(op, ast.In | ast.NotIn) for op in node.ops) and any(_is_environ(c) for c in node.comparators):
            found.add(node.left.value)
    return found


def variables_read_by_makefile(text: str) -> set[str]:
    """Variables a user may set for make (`NAME ?=`) and those its recipes read from the shell (`$${NAME`)."""
    overridable = re.findall(r"^([A-Z][A-Z0-9_]*)\s*\?=", text, flags=re.MULTILINE)
    return set(overridable) | set(re.findall(r"\$\$\{?([A-Z][A-Z0-9_]*)", text))


def variables_read_by_compose(text: str) -> set[str]:
    """Variables docker-compose.yml interpolates from `.env` or the shell (`${NAME...}`)."""
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))


def python_files(*roots: str) -> list[Path]:
    return sorted(p for root in roots for p in (ROOT / root).rglob("*.py") if "migrations" not in p.parts)


def product_variables() -> set[str]:
    """Every environment variable the product reads: its two packages, manage.py, the Makefile and compose."""
    found = set()
    for path in [*python_files(*PACKAGES), ROOT / "manage.py"]:
        found |= variables_read_by_python(path)
    found |= variables_read_by_makefile((ROOT / "Makefile").read_text())
    return found | variables_read_by_compose((ROOT / "docker-compose.yml").read_text())


def section(markdown: str, heading: str) -> str:
    """The text under `heading` (a line such as "## Environment variables"), up to the next heading of its level."""
    level = heading.split(" ")[0]
    start = markdown.index(f"\n{heading}\n") + len(heading) + 2
    following = re.search(rf"^{level} ", markdown[start:], flags=re.MULTILINE)
    return markdown[start:start + following.start()] if following else markdown[start:]


def documented_variables() -> dict[str, list[str]]:
    """Variable -> the cells of its row, from the tables under docs/operations.md's "Environment variables"."""
    rows = {}
    for line in section((DOCS / "operations.md").read_text(), "## Environment variables").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) == 3 and not set(cells[0]) <= set("-"):
            for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0]):
                rows[name] = cells
    return rows


def test_the_scan_sees_reads_of_every_kind(tmp_path):
    source = tmp_path / "reads.py"
    source.write_text("import os\nfrom lfl_web.env import env_bool\n"
                      "a = os.environ.get('A_GET')\nb = os.environ['B_ITEM']\nc = os.getenv('C_GETENV', '1')\n"
                      "os.environ.setdefault('D_DEFAULT', 'x')\ne = env_bool('E_BOOL', False)\n"
                      "f = 'F_IN' in os.environ\nos.environ['G_WRITTEN'] = 'a write, not a read'\n"
                      "h = os.environ.get(name_in_a_variable)\n")
    assert variables_read_by_python(source) == {"A_GET", "B_ITEM", "C_GETENV", "D_DEFAULT", "E_BOOL", "F_IN"}
    assert variables_read_by_makefile("PY ?= x\nrun:\n\tA=\"$${B_SHELL:-$(PY)}\" $$sudo make\n") == {"PY", "B_SHELL"}
    assert variables_read_by_compose("x: ${C_COMPOSE:?set it}\ny: $$literal") == {"C_COMPOSE"}


def test_every_environment_variable_the_product_reads_is_documented_with_a_default_and_a_meaning():
    read = product_variables()
    # The scan reaches settings, runstack, the engine, the Makefile and compose (it is not vacuous).
    assert {"REDIS_URL", "LFL_CHUNK_DISPATCH", "LFL_VISIBILITY_TIMEOUT", "LFL_CANCEL_POLL_SECONDS", "LFL_PORT",
            "LFL_ADMIN_PASSWORD", "LFL_MALLOC_TUNING", "DJANGO_SETTINGS_MODULE", "PYTHON",
            "POSTGRES_PASSWORD"} <= read
    documented = documented_variables()
    assert sorted(read - set(documented)) == [], "read but not in docs/operations.md's Environment variables"
    assert all(cells[1] and cells[2] for cells in documented.values())


def names_in_environment_readers(path: Path) -> set[str]:
    """Upper-case string constants of a Python file that reads os.environ: the variables it may read
    through a helper (tests/web/browser.py's `find_binary("LFL_CHROMIUM", ...)`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    if not any(_is_environ(node) for node in ast.walk(tree)):
        return set()
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and re.fullmatch(r"[A-Z][A-Z0-9_]+", node.value)}


def test_no_variable_is_documented_that_nothing_reads():
    read_anywhere = product_variables()
    for path in python_files("tests"):
        read_anywhere |= variables_read_by_python(path) | names_in_environment_readers(path)
    assert sorted(set(documented_variables()) - read_anywhere) == []


# --------------------------------------------------------------------------- the development tree

def documented_tree() -> list[str]:
    """The paths of docs/architecture.md's tree: nested list items "- `name`" (folders end in "/"),
    two spaces of indent per level; a name may hold several path segments."""
    paths, parents = [], []
    for line in section((DOCS / "architecture.md").read_text(), "## The tree").splitlines():
        match = re.match(r"^( *)- `([^`]+)`", line)
        if not match:
            continue
        depth, name = len(match.group(1)) // 2, match.group(2)
        del parents[depth:]
        path = "".join(parents) + name
        paths.append(path)
        if name.endswith("/"):
            parents.append(name)
    return paths


def test_every_module_and_package_is_in_the_architecture_tree_and_nothing_else():
    documented = documented_tree()
    assert len(documented) == len(set(documented)), "a path is listed twice"
    modules = {p.relative_to(ROOT).as_posix() for p in python_files(*PACKAGES) if p.name != "__init__.py"}
    packages = {p.parent.relative_to(ROOT).as_posix() + "/" for root in PACKAGES
                for p in (ROOT / root).rglob("__init__.py")}
    files = {p for p in documented if not p.endswith("/")}
    assert sorted(modules - files) == [], "modules missing from docs/architecture.md"
    assert sorted(files - modules) == [], "docs/architecture.md lists modules that do not exist"
    folders = {p for p in documented if p.endswith("/")}
    assert sorted(folders - packages) == [], "docs/architecture.md lists folders that are not packages"
    # A package is documented by its own line or by a module listed under it (management/commands/x.py).
    undocumented = [p for p in packages if p not in folders and not any(f.startswith(p) for f in files)]
    assert sorted(undocumented) == []


# --------------------------------------------------------------------------- README and links

def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a page: lower case, punctuation dropped, spaces -> '-'."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE):
        text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
        anchors.add(text.replace(" ", "-"))
    return anchors


def broken_links(page: Path) -> list[str]:
    """The relative links of a markdown page whose file or heading does not exist."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists() or (anchor and anchor not in heading_anchors(linked.read_text())):
            broken.append(target)
    return broken


def test_the_readme_is_a_short_front_door_that_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    for page in PAGES:
        assert f"](docs/{page})" in readme and (DOCS / page).exists(), page
    assert "make run" in readme and "make test" in readme


def test_every_link_of_the_readme_and_the_docs_resolves():
    assert heading_anchors("## What survives what\n### `make run`: the whole stack\n") == {
        "what-survives-what", "make-run-the-whole-stack"}
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        assert broken_links(page) == [], page.name


def test_the_configuration_table_is_the_one_the_fields_write():
    """docs/configuration.md's table is `fields.reference_table` of the configuration: a field, its
    default, its bounds or words changed beside the dataclass field show here once the page is rewritten."""
    from search_engine.config import ExperimentConfig
    from search_engine.fields import reference_table

    page = (ROOT / "docs" / "configuration.md").read_text()
    start = page.index("-->\n", page.index("<!-- configuration table:")) + len("-->\n")
    written = page[start : page.index("\n<!-- end of the configuration table -->")]
    expected = reference_table(ExperimentConfig)
    assert written == expected, "docs/configuration.md's table is out of date; it should read:\n" + expected
