"""The docs stay true: every ```python block in docs/*.md and README.md runs, and the drift a
machine can see is caught: the example range a page names ("01 to 12") against examples/, every
relative link against the files, and every `file.py`, `minispike.x.y` and function name written
in backticks against the code."""
import importlib
import importlib.util
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import minispike

HAS_NUMBA = importlib.util.find_spec("numba") is not None

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
EXAMPLE = re.compile(r"^(\d\d)_\w+\.py$")
RANGE = re.compile(r"\b(?:examples?\b[^.\n]{0,60}?)?\b01 to (\d\d)\b")
PY_PATH = re.compile(r"^([\w./-]+\.py)(?:::(\w+))?$")
COMMAND = re.compile(r"\bpython3? ([\w./-]+\.py)\b")  # python examples/05_spiking_network.py --fast
DOTTED = re.compile(r"\bminispike(?:\.\w+)+")
# A call written in backticks, `name(...)` or `Owner.name(...)`, or a bare `Class.method`:
# names with an underscore or a dot, so that maths in backticks (`softmax(z)`, `Theta(E)`) is not read as code.
CALL = re.compile(r"^((?:[A-Za-z]\w*\.)*[A-Za-z]\w*)\(")
ATTR = re.compile(r"^([A-Z]\w*(?:\.\w+)+|[a-z]\w*\.[a-z_]\w*)$")
FILE_TYPES = {"py", "json", "jsonl", "md", "txt", "npz", "png", "svg", "safetensors", "tsv", "cfg", "toml", "ipynb"}
NOTATION = re.compile(r"_[A-Za-z0-9]$")  # a one-character subscript: LN_i, SpikeLinear_q, W_c
# Files named in the docs that live in another repository, said so in the text beside them.
EXTERNAL = {
    "model/new_spikformer.py",  # the official SpikeBERT code (differences-from-official.md)
    "snntorch/_neurons/leaky.py",  # snnTorch's Leaky neuron (lif.md)
}
# Where a bare or partial path written in a page is looked for.
SEARCH_DIRS = ("", "minispike", "tests", "examples", "benchmarks", "exercises")


def prose(text):
    """A page without its fenced blocks (their code runs or is shell, checked elsewhere)."""
    return FENCE.sub("", text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_snippets_run(page, tmp_path, monkeypatch):
    blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip(f"{page.name} has no python snippets")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs.{page.stem}"}
    for i, code in enumerate(blocks, 1):
        try:
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # name the page and block
            raise AssertionError(f"{page.name}, python block {i} failed: {type(e).__name__}: {e}") from e


def test_the_runner_finds_blocks():
    assert BLOCK.findall("text\n```python\nx = 1\n```\nmore\n") == ["x = 1\n"]


# ----------------------------------------------------------------------------------------
# Drift: counts, links, files and names
# ----------------------------------------------------------------------------------------
def example_numbers():
    return sorted(int(m.group(1)) for p in (ROOT / "examples").iterdir() if (m := EXAMPLE.match(p.name)))


NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen".split()
# "12 examples", "twelve numbered examples"; and the examples index's title, "... in eleven steps"
COUNT = re.compile(r"\b(\d+|%s) (?:numbered )?examples\b|^#.*\bin (\d+|%s) steps\b"
                   % ("|".join(NUMBER_WORDS), "|".join(NUMBER_WORDS)), re.I | re.M)


def range_errors(text, highest):
    """Every "01 to NN" a page writes about the examples where NN is not the last example, and
    every count of examples ("twelve examples", a title "in eleven steps") that is not their number."""
    bad = [m.group(0) for m in RANGE.finditer(text) if int(m.group(1)) != highest]
    for m in COUNT.finditer(text):
        word = (m.group(1) or m.group(2)).lower()
        if (int(word) if word.isdigit() else NUMBER_WORDS.index(word)) != highest:
            bad.append(m.group(0))
    return bad


def test_examples_are_numbered_without_gaps():
    numbers = example_numbers()
    assert numbers == list(range(1, len(numbers) + 1)), f"examples/ is numbered {numbers}"


@pytest.mark.parametrize("page", PAGES + [ROOT / "examples" / "README.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_example_range_a_page_names_is_the_examples_there_are(page):
    highest = example_numbers()[-1]
    bad = range_errors(page.read_text(encoding="utf-8"), highest)
    assert not bad, f"{page.relative_to(ROOT)} names {bad}, but the examples run 01 to {highest:02d}"


def test_range_check_reads_the_phrase():
    assert range_errors("the numbered examples in [examples/](x), 01 to 10, in order", 12) == [
        "examples in [examples/](x), 01 to 10"]
    assert range_errors("examples 01 to 12", 12) == [] and range_errors("between 776 to 2,210", 12) == []
    assert range_errors("# Examples, in eleven steps\nthe 12 examples; twelve numbered examples", 12) == [
        "# Examples, in eleven steps"]
    assert range_errors("the neuron charges in four steps", 12) == []   # steps in prose, not a title


def link_errors(page):
    errors = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor on the same page
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            errors.append(target)
    return errors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file(page):
    bad = link_errors(page)
    assert not bad, f"{page.relative_to(ROOT)} links to missing files: {bad}"


def find_file(path):
    """The repository file a page means by ``path`` (``ops/nn.py`` is minispike/ops/nn.py), or None."""
    for base in SEARCH_DIRS:
        candidate = ROOT / base / path
        if candidate.is_file():
            return candidate
    if "/" not in path:  # a bare file name: anywhere in the package, tests or examples
        for base in SEARCH_DIRS[1:]:
            hit = next((ROOT / base).rglob(path), None) if (ROOT / base).is_dir() else None
            if hit is not None:
                return hit
    return None


def py_paths(text):
    """``(path, test name or None)`` for every Python file a page names: in a backticked span
    outside the fenced blocks, or run as ``python path.py`` anywhere (shell blocks too)."""
    for span in SPAN.findall(prose(text)):
        for word in span.split():
            m = PY_PATH.match(word.strip(",;:()"))
            if m:
                yield m.group(1), m.group(2)
    for m in COMMAND.finditer(text):
        yield m.group(1), None


def file_errors(text):
    errors = []
    for path, test in py_paths(text):
        if path in EXTERNAL:
            continue
        found = find_file(path)
        if found is None:
            errors.append(path)
        elif test and not re.search(rf"^\s*def {test}\b", found.read_text(encoding="utf-8"), re.M):
            errors.append(f"{path}::{test}")
    return errors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_file_a_page_names_exists(page):
    bad = file_errors(page.read_text(encoding="utf-8"))
    assert not bad, f"{page.relative_to(ROOT)} names files or tests that are not there: {bad}"


def resolve_dotted(name):
    """Import the longest module prefix of ``minispike.a.b.c`` and look the rest up on it."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def class_attributes(cls):
    """What ``Class.x`` may name: its attributes, dataclass fields and ``self.x =`` assignments."""
    names = set(dir(cls)) | set(getattr(cls, "__dataclass_fields__", {}))
    try:
        names |= set(re.findall(r"\bself\.(\w+)\s*=", inspect.getsource(cls)))
    except (OSError, TypeError):
        pass
    return names


def package_names():
    """Every name minispike defines: module names, top-level names of each module (not what it
    imports from elsewhere), ``Class.attribute`` and the bare attribute names of its classes."""
    names = set()
    for info in pkgutil.walk_packages(minispike.__path__, "minispike."):
        if info.name.endswith("__main__") or (info.name == "minispike._numba_kernels" and not HAS_NUMBA):
            continue  # the numba kernels import numba, the optional extra [fast]
        module = importlib.import_module(info.name)
        names.add(info.name.rsplit(".", 1)[-1])
        for key, value in vars(module).items():
            if inspect.ismodule(value) or getattr(value, "__module__", "minispike").split(".")[0] != "minispike":
                continue  # numpy, os, ... imported into the module
            names.add(key)
            if inspect.isclass(value):
                attrs = class_attributes(value)
                names.update(f"{key}.{attr}" for attr in attrs)
                names.update(attr for attr in attrs if not attr.startswith("__"))
    return names


def is_module(name):
    try:
        return inspect.ismodule(importlib.import_module(f"minispike.{name}"))
    except ImportError:
        return False


def name_errors(text, known):
    errors = []
    for span in SPAN.findall(prose(text)):
        span = span.strip()
        errors += [d for d in DOTTED.findall(span) if not resolve_dotted(d)]
        m = CALL.match(span) or ATTR.match(span)
        if not m or m.group(1).startswith("minispike."):
            continue
        name = m.group(1)
        head, _, rest = name.partition(".")
        if rest.rsplit(".", 1)[-1] in FILE_TYPES:
            continue  # `tensor.py`, `tokenizer.json`: a file, checked by the file test
        if not rest and ("_" not in name or NOTATION.search(name)):
            continue  # `softmax(x)`, `Theta(E)`, `LN_i(x)`: notation, not a name in the code
        if rest and head[0].islower():
            if is_module(head) and not resolve_dotted(f"minispike.{name}"):
                errors.append(name)  # `ops.mse_loss`, `pipeline.pretrain`; `x.grad`, `rec.names()` are variables
            continue
        if rest and head not in known:
            continue  # `Tensor`-less owner: not one of minispike's classes
        if name not in known:
            errors.append(name)
    return errors


@pytest.fixture(scope="module")
def known_names():
    return package_names()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_name_a_page_writes_in_backticks_exists(page, known_names):
    bad = name_errors(page.read_text(encoding="utf-8"), known_names)
    assert not bad, f"{page.relative_to(ROOT)} names what the code does not have: {sorted(set(bad))}"


def test_the_drift_checks_can_fail(known_names, tmp_path):
    text = ("See `minispike/nope.py`, `tests/test_lif.py::test_no_such_test`, `minispike.energy.no_such_thing`, "
            "`layer_map_twin(a, b)` and `LIFFunction.backwards`; `softmax(z)`, `rec.firing_rates()`, "
            "`ops/nn.py`, `tests/test_lif.py` and `minispike.energy.count_ops` are fine.")
    assert file_errors(text) == ["minispike/nope.py", "tests/test_lif.py::test_no_such_test"]
    assert file_errors("```bash\npython benchmarks/bench_nothing.py --steps 2\npython -m minispike demo\n```\n") == [
        "benchmarks/bench_nothing.py"]
    assert name_errors(text, known_names) == ["minispike.energy.no_such_thing", "layer_map_twin",
                                              "LIFFunction.backwards"]
    page = tmp_path / "page.md"
    page.write_text("[here](overview.md) [web](https://x.org) [top](#top)\n```text\n[no](skipped.md)\n```\n")
    assert link_errors(page) == ["overview.md"]
