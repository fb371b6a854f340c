"""The docs against the code: a name, a default or a count the docs state that the code does
not have fails here, and so does one the code has that the docs leave out.

Everything is read from the sources each run (templates, the metric emitters, the
configuration code, the Makefiles, the argument parsers, the request-counting test), so a new
metric, variable or parameter that reaches the code without reaching the docs fails the test.

    python -m pytest -q tests/test_docs.py      (make docs-test; part of make test)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH_BEGIN, BENCH_END = "<!-- bench:begin -->", "<!-- bench:end -->"


# --------------------------------------------------------------------------- the docs


def doc_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "infra" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass
class Doc:
    path: Path
    text: str

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))

    def without_bench_block(self) -> str:
        if BENCH_BEGIN not in self.text:
            return self.text
        head, rest = self.text.split(BENCH_BEGIN, 1)
        return head + rest.split(BENCH_END, 1)[1]

    def code_blocks(self) -> list[str]:
        return re.findall(r"^```[^\n]*\n(.*?)^```", self.text, re.S | re.M)

    def prose(self) -> str:
        """The text outside fenced code blocks and outside the generated bench block."""
        return re.sub(r"^```[^\n]*\n.*?^```", "", self.without_bench_block(), flags=re.S | re.M)

    def tables(self) -> list[tuple[list[str], list[list[str]]]]:
        found = []
        lines = self.prose().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1]):
                header = cells(lines[i])
                rows = []
                i += 2
                while i < len(lines) and lines[i].startswith("|"):
                    rows.append(cells(lines[i]))
                    i += 1
                found.append((header, rows))
            else:
                i += 1
        return found


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def ticks(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return [Doc(p, p.read_text()) for p in doc_files()]


def tables_whose_first_header(docs, pattern: str):
    for doc in docs:
        for header, rows in doc.tables():
            match = re.fullmatch(pattern, header[0], re.I)
            if match:
                yield doc, match, header, rows


# --------------------------------------------------------------------------- the code


def rust(path: Path) -> str:
    """A Rust file without its test module (names in tests are not what the code emits)."""
    return path.read_text().split("#[cfg(test)]", 1)[0]


def rust_sources() -> list[Path]:
    return sorted(p for p in (ROOT / "crates").glob("*/src/**/*.rs"))


def templates() -> dict[str, dict]:
    from samtranslator.yaml_helper import yaml_parse

    return {p.name: yaml_parse(p.read_text()) for p in sorted((ROOT / "infra").glob("*.yaml"))}


# --------------------------------------------------------------------------- template parameters


def test_every_documented_parameter_exists_and_every_parameter_is_documented(docs):
    params = {name: set(t.get("Parameters", {})) for name, t in templates().items()}
    problems = []
    tabled: dict[str, set[str]] = {}
    for doc, match, _, rows in tables_whose_first_header(docs, r"`([\w-]+\.yaml)` parameter"):
        template = match.group(1)
        if template not in params:
            problems.append(f"{doc.name}: a table of parameters of {template}, which infra/ does not have")
            continue
        for row in rows:
            for name in ticks(row[0]):
                tabled.setdefault(template, set()).add(name)
                if name not in params[template]:
                    problems.append(f"{doc.name}: parameter {name} is not in infra/{template}")
    for template, names in tabled.items():
        for missing in sorted(params[template] - names):
            problems.append(f"infra/{template} parameter {missing} is missing from its table in the docs")
    # Every required parameter (no Default) is named in the docs.
    all_text = "\n".join(d.text for d in docs)
    for template, t in templates().items():
        for name, spec in t.get("Parameters", {}).items():
            if "Default" not in spec and f"`{name}`" not in all_text:
                problems.append(f"infra/{template}: required parameter {name} is documented nowhere")
    assert not problems, "\n".join(problems)


def test_parameters_in_commands_exist(docs):
    params = {name: set(t.get("Parameters", {})) for name, t in templates().items()}
    params["replication.packaged.yaml"] = params["replication.yaml"]
    every = set().union(*params.values())
    problems = []
    for doc in docs:
        for block in doc.code_blocks():
            for command in block.replace("\\\n", " ").splitlines():
                template = re.search(r"--template-file\s+\S*?([\w.-]+\.yaml)", command)
                overrides = command.split("--parameter-overrides", 1)
                if template and len(overrides) == 2:
                    known = params.get(template.group(1), set())
                    for name in re.findall(r"(?:^|\s)'?\[?([A-Z][A-Za-z0-9]*)=", overrides[1]):
                        if name not in known:
                            problems.append(f"{doc.name}: {template.group(1)} has no parameter {name} (in `{command.strip()[:80]}...`)")
        # infra/deploy.py --parameter KEY=VALUE, and `Name=value` in prose.
        for name in re.findall(r"--parameter[ =]([A-Za-z0-9]+)=", doc.text):
            if name not in params["replication.yaml"] and name != "KEY":
                problems.append(f"{doc.name}: --parameter {name}: infra/replication.yaml has no such parameter")
        for span in ticks(doc.prose()):
            m = re.fullmatch(r"([A-Z][a-z]+[A-Za-z0-9]*)=\S+", span)
            if m and m.group(1) not in every:
                problems.append(f"{doc.name}: `{span}` names a parameter no template has")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- metrics


def emitted_metrics() -> dict[str, set[str]]:
    """Metric names the code declares, by crate: EMF declarations (`"Name": "X"`) and the
    metric-name constants of the metric modules."""
    found: dict[str, set[str]] = {}
    for path in rust_sources():
        code = rust(path)
        names = set(re.findall(r'"Name"\s*:\s*"([A-Za-z][A-Za-z0-9]*)"', code))
        if path.name in ("metrics.rs", "emf.rs"):
            for const, value in re.findall(r'pub const ([A-Z_]+): &str = "([A-Za-z][A-Za-z0-9]*)";', code):
                if const != "NAMESPACE":
                    names.add(value)
        if names:
            found.setdefault(path.parts[len(ROOT.parts) + 1], set()).update(names)
    return found


def test_metric_names_match_the_code(docs):
    by_crate = emitted_metrics()
    code = set().union(*by_crate.values())
    assert {"ReplicatedObjects", "CanaryStale", "ReadRegionFailing"} <= code, f"metric scan found only {sorted(code)}"
    documented = {}
    for doc, _, _, rows in tables_whose_first_header(docs, r"metric"):
        for row in rows:
            for name in ticks(row[0]):
                documented.setdefault(name, doc.name)
    problems = [f"{where}: metric {name} is not emitted by any crate" for name, where in documented.items() if name not in code]
    problems += [
        f"metric {name} (crates/{crate}) is missing from the docs' metric table"
        for crate, names in by_crate.items()
        for name in sorted(names - set(documented))
    ]
    assert not problems, "\n".join(problems)


def test_metric_counts_stated_in_the_docs(docs):
    by_crate = emitted_metrics()
    problems = []
    for doc in docs:
        for n in re.findall(r"(\d+) metrics per target", doc.prose()):
            if int(n) != len(by_crate["s3fanout"]):
                problems.append(f"{doc.name}: \"{n} metrics per target\", the replicate function emits {len(by_crate['s3fanout'])}: {sorted(by_crate['s3fanout'])}")
        for n in re.findall(r"canary adds (\d+) per target", doc.prose()):
            if int(n) != len(by_crate["canary"]):
                problems.append(f"{doc.name}: \"canary adds {n} per target\", it emits {len(by_crate['canary'])}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- alarms


def template_alarms(template: str) -> dict[str, str | None]:
    """Alarm name without the `${AWS::StackName}-` prefix -> the condition it is created under."""
    found = {}
    for resource in templates()[template]["Resources"].values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            name = resource["Properties"]["AlarmName"]["Fn::Sub"]
            found[name.split("${AWS::StackName}-", 1)[1]] = resource.get("Condition")
    return found


def test_alarms_match_the_template(docs):
    """The alarm table names every alarm of infra/replication.yaml and no other; the alarm
    counts stated in the docs are the template's."""
    alarms = template_alarms("replication.yaml")
    assert "failed-copies" in alarms, sorted(alarms)
    problems = []
    tabled = set()
    for doc, _, _, rows in tables_whose_first_header(docs, r"alarm"):
        for row in rows:
            for name in ticks(row[0]):
                tabled.add(name)
                if name not in alarms:
                    problems.append(f"{doc.name}: alarm {name} is not in infra/replication.yaml")
    problems += [f"infra/replication.yaml alarm {name} is missing from the docs' alarm table" for name in sorted(set(alarms) - tabled)]
    counts = {
        "standard alarms": len(alarms),
        "with S3Notification wiring": sum(c != "UseEventBridge" for c in alarms.values()),
        "fewer without the canary": sum(c == "CanaryEnabled" for c in alarms.values()),
    }
    for doc in docs:
        prose = " ".join(doc.prose().split())
        for n, what in re.findall(rf"(\d+) ({'|'.join(counts)})", prose):
            if int(n) != counts[what]:
                problems.append(f"{doc.name}: \"{n} {what}\", infra/replication.yaml has {counts[what]}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- environment variables


CONFIG_SOURCES = [
    "crates/s3fanout/src/core/config.rs",
    "crates/s3fanout/src/store/clients.rs",
    "crates/canary/src/config.rs",
    "crates/read/src/config.rs",
    "crates/cli/src/read.rs",
    "crates/replicate/src/retry_queue.rs",
]


def configuration_variables() -> dict[str, str]:
    """Variable name -> the configuration code that reads it."""
    found = {}
    for rel in CONFIG_SOURCES:
        code = rust(ROOT / rel)
        names = set(re.findall(r'pub const [A-Z_]+: &str = "([A-Z][A-Z0-9_]+)";', code.split("pub mod vars", 1)[-1].split("\n}", 1)[0])) if "pub mod vars" in code else set()
        names |= set(re.findall(r'(?:lookup|millis|var|var_os)\(\s*"([A-Z][A-Z0-9_]+)"', code))
        names |= set(re.findall(r'"(AWS_[A-Z0-9_]+)"', code))
        for name in names:
            found[name] = code
    return found


_UNITS = {"": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def evaluate_constant(code: str, name: str) -> int | None:
    """The value of `const NAME: T = EXPR;` (integers, KiB/MiB/GiB constants, Durations in
    milliseconds), or None when it is not such an expression."""
    m = re.search(rf"const {name}: [^=]+= ([^;]+);", code)
    return evaluate(m.group(1)) if m else None


def evaluate(expr: str) -> int | None:
    """An integer expression of the code: literals, KiB/MiB/GiB constants, Durations (in
    milliseconds); None for anything else."""
    expr = expr.strip().replace("_", "")
    expr = re.sub(r"Duration::fromsecs\(([^)]*)\)", r"((\1)*1000)", expr)
    expr = re.sub(r"Duration::frommillis\(([^)]*)\)", r"(\1)", expr)
    expr = expr.replace("KIB", "1024").replace("MIB", "1048576").replace("GIB", "1073741824")
    if not re.fullmatch(r"[\d\s*+()/-]+", expr):
        return None
    return int(eval(expr))  # digits and arithmetic only, checked above


def code_default(name: str, code: str) -> str | int | None:
    """What the configuration code uses when the variable is not set: the DEFAULT_ constant
    of the statement that reads it, a literal after `None =>`, or the DEFAULT_ constant whose
    doc comment names the variable."""
    read = re.search(rf'\(\s*(?:vars::{name}\b|"{name}")', code)
    if read:
        statement = code[read.start(): code.find(";", read.start())]
        const = re.search(r"\b(DEFAULT_[A-Z_]+)\b", statement)
        if const:
            return evaluate_constant(code, const.group(1))
        literal = re.search(r"None\s*=>\s*(true|false|\d+)\b", statement)
        if literal:
            return literal.group(1)
        # `if let Some(v) = lookup("X") { ... config.field = ... }` over a Default impl.
        block = code[read.start(): read.start() + 1200].split("if let Some", 1)[0]
        field = re.search(r"config\.(\w+)\s*=", block)
        if field:
            # The field's initial value (the struct definition has its type there instead).
            for initial in re.findall(rf"\b{field.group(1)}:\s*([^,\n]+),", code):
                if evaluate(initial) is not None:
                    return evaluate(initial)
    commented = re.search(rf"///[^\n]*`{name}`[^\n]*\n(?:\s*///[^\n]*\n)*\s*pub const (DEFAULT_[A-Z_]+)", code)
    if commented:
        return evaluate_constant(code, commented.group(1))
    return None


def doc_default(cell: str) -> str | int | None:
    """The first backticked value of a default cell, in the variable's own unit."""
    values = ticks(cell)
    if not values:
        return None
    value = values[0].strip()
    m = re.fullmatch(r"(\d+)\s*([KMG]iB)?", value, re.I)
    if m:
        return int(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    return value


def test_environment_variables_and_defaults_match_the_configuration_code(docs):
    variables = configuration_variables()
    assert {"SOURCE_BUCKETS", "CANARY_WAIT_MS", "READ_TIMEOUT_MS"} <= set(variables), sorted(variables)
    problems = []
    documented = set()
    for doc, _, header, rows in tables_whose_first_header(docs, r"variable"):
        column = [h.lower() for h in header].index("default") if "default" in [h.lower() for h in header] else None
        for row in rows:
            names = ticks(row[0])
            defaults = [c.strip() for c in row[column].split(",")] if column is not None else []
            for i, name in enumerate(names):
                documented.add(name)
                if name not in variables:
                    problems.append(f"{doc.name}: variable {name} is read by no configuration code ({', '.join(CONFIG_SOURCES)})")
                    continue
                expected = code_default(name, variables[name])
                if expected is None or column is None:
                    continue
                cell = defaults[i] if len(names) > 1 and i < len(defaults) else row[column]
                stated = doc_default(cell)
                if str(stated) != str(expected):
                    problems.append(f"{doc.name}: {name} defaults to {stated!r} in the docs, {expected!r} in the code")
    for name in sorted(set(variables) - documented):
        problems.append(f"variable {name} is read by the configuration code but missing from the docs' variable tables")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- make targets and flags


def make_targets() -> set[str]:
    targets = set()
    for path in (ROOT / "Makefile", ROOT / "infra" / "infra.mk"):
        targets |= set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", path.read_text(), re.M))
    return targets


def command_spans(doc: Doc) -> list[str]:
    """Command lines: the lines of code blocks, and backticked spans of prose."""
    lines = [line for block in doc.code_blocks() for line in block.replace("\\\n", " ").splitlines()]
    return lines + ticks(doc.prose())


def test_make_targets_exist(docs):
    targets = make_targets()
    problems = []
    for doc in docs:
        for span in command_spans(doc):
            for target in re.findall(r"(?:^|[\s;&(])make ((?:[a-z][a-z0-9-]*\s*)+)", span):
                for name in target.split():
                    if "=" not in name and name not in targets:
                        problems.append(f"{doc.name}: `make {name}` is no target of the Makefile or infra/infra.mk")
    assert not problems, "\n".join(problems)


def cli_flags() -> set[str]:
    """Flags of the `s3fanout` command (clap derive in crates/cli)."""
    flags = {"--help", "-h", "--version", "-V"}
    for rel in ("crates/cli/src/args.rs", "crates/cli/src/read.rs"):
        code = rust(ROOT / rel)
        for attr, field in re.findall(r"#\[arg\(([^\]]*?)\)\]\s*(?:///[^\n]*\n\s*)*pub (\w+):", code, re.S):
            long = re.search(r'long\s*=\s*"([\w-]+)"', attr)
            if re.search(r"\blong\b", attr):
                flags.add("--" + (long.group(1) if long else field.replace("_", "-")))
            if re.search(r"\bshort\b", attr):
                short = re.search(r"short\s*=\s*'(\w)'", attr)
                flags.add("-" + (short.group(1) if short else field[0]))
    return flags


def deploy_flags() -> set[str]:
    return set(re.findall(r'add_argument\(\s*"(--[\w-]+)"', (ROOT / "infra" / "deploy.py").read_text())) | {"--help"}


def canary_flags() -> set[str]:
    return set(re.findall(r'"(--[a-z][\w-]*)', rust(ROOT / "crates" / "canary" / "src" / "main.rs")))


# Flags of other tools the docs show (the AWS CLI, cargo, aws s3 sync and its peers).
OTHER_TOOLS = {
    "--invocation-type", "--payload", "--cli-binary-format", "--cli-read-timeout", "--function-name",
    "--template-file", "--stack-name", "--parameter-overrides", "--region", "--capabilities",
    "--s3-bucket", "--output-template-file", "--bucket", "--notification-configuration",
    "--account-id", "--operation", "--manifest", "--report", "--priority", "--role-arn",
    "--no-confirmation-required", "--release", "--arm64", "--output-format", "--include-ignored",
    "--workspace", "--all-targets", "--test", "--bin", "--delete", "--dryrun", "--exclude",
    "--include", "--guided", "--check", "--no-print-directory", "--all",
}


def test_command_line_flags_exist(docs):
    ours = {"s3fanout": cli_flags(), "deploy.py": deploy_flags(), "canary": canary_flags()}
    assert {"--dry-run", "--target", "--metrics-file", "-o"} <= ours["s3fanout"], sorted(ours["s3fanout"])
    problems = []
    for doc in docs:
        for span in command_spans(doc):
            flags = re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", span)
            if re.search(r"(?:^|[\s$=])s3fanout (?:replicate|backfill|verify|get|head)\b", span):
                tool = "s3fanout"
            elif re.search(r"infra/deploy\.py|DEPLOY_ARGS|BACKFILL_ARGS|DESTROY_ARGS", span):
                tool = "deploy.py"
            elif re.search(r"(?:^|\s)canary --", span):
                tool = "canary"
            else:
                tool = None
            for flag in flags:
                if not flag.startswith("--") and tool != "s3fanout":
                    continue
                if tool is not None:
                    if flag not in ours[tool]:
                        problems.append(f"{doc.name}: {tool} has no flag {flag} (`{span.strip()[:70]}`)")
                elif flag not in set().union(*ours.values()) | OTHER_TOOLS:
                    problems.append(f"{doc.name}: flag {flag} belongs to no command of this project nor to a tool the docs use (`{span.strip()[:70]}`)")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- requests per change


def asserted_request_counts() -> dict[str, tuple[str, str, str, str]]:
    """Case label -> the (reads, copies, create-only copies, other) tuple tests/tests/requests.rs
    asserts for it, as expressions in N."""
    code = (ROOT / "tests" / "tests" / "requests.rs").read_text()
    cases = re.findall(
        r'println!\("([^":]+): \{:\?\}", kinds\(&seen\)\);\s*assert_eq!\(kinds\(&seen\), \(([^)]*(?:\([^)]*\)[^)]*)*)\)',
        code,
    )
    found = {}
    for label, tuple_text in cases:
        parts = [p.strip() for p in tuple_text.split(",")]
        assert len(parts) == 4, (label, tuple_text)
        found[label] = tuple(parts)
    assert found, "no asserted counts found in tests/tests/requests.rs"
    return found


def at(expr: str, n: int) -> int:
    assert re.fullmatch(r"[\dN\s*+()-]+", expr), expr
    return int(eval(expr, {"N": n}))  # digits, N and arithmetic only, checked above


def test_requests_per_change_equal_what_the_test_asserts(docs):
    asserted = asserted_request_counts()
    problems = []
    seen = set()
    for doc in docs:
        for header, rows in doc.tables():
            lower = [h.lower() for h in header]
            if "asserted by" not in lower:
                continue
            col = {name: lower.index(name) for name in ("reads (head, get)", "copies", "other", "in all, n = 3", "asserted by")}
            for row in rows:
                label = re.search(r'"([^"]+)"', row[col["asserted by"]])
                if not label or label.group(1) not in asserted:
                    problems.append(f"{doc.name}: row {row[0][:40]!r} names no case of tests/tests/requests.rs ({sorted(asserted)})")
                    continue
                seen.add(label.group(1))
                reads, copies, _, other = asserted[label.group(1)]
                for column, expr in (("reads (head, get)", reads), ("copies", copies), ("other", other)):
                    stated = ticks(row[col[column]])[0]
                    if any(at(stated, n) != at(expr, n) for n in range(1, 9)):
                        problems.append(f"{doc.name}: {label.group(1)}: {column} `{stated}`, the test asserts {expr}")
                total = at(reads, 3) + at(copies, 3) + at(other, 3)
                if row[col["in all, n = 3"]] != str(total):
                    problems.append(f"{doc.name}: {label.group(1)}: {row[col['in all, n = 3']]} requests at N = 3, the test asserts {total}")
    for label in sorted(set(asserted) - seen):
        problems.append(f"tests/tests/requests.rs case {label!r} is in no docs table")
    new = asserted["new object"]
    for doc in docs:
        prose = " ".join(doc.prose().split())
        for count, n in re.findall(r"(\d+) requests per object at (\d+) targets", prose):
            expected = at(new[0], int(n)) + at(new[1], int(n)) + at(new[3], int(n))
            if int(count) != expected:
                problems.append(f"{doc.name}: \"{count} requests per object at {n} targets\", the test asserts {expected} for a new object")
        # "a new object costs one `HeadObject` of the source plus one `CopyObject` per replica"
        for sentence, reads, copies in re.findall(NEW_OBJECT_COST, prose, re.I):
            stated_reads, per_target = number(reads), number(copies)
            if any(at(new[0], n) != stated_reads or at(new[1], n) != per_target * n or at(new[3], n) != 0 for n in range(1, 9)):
                problems.append(
                    f"{doc.name}: \"{sentence}\": the test asserts {new[0]} reads, {new[1]} copies and {new[3]} other requests for a new object"
                )
    assert not problems, "\n".join(problems)


# A new object's requests said in words: reads of the source, then copies per target.
WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
COUNT = rf"({'|'.join(WORDS)}|\d+)"
NEW_OBJECT_COST = (
    rf"(new object costs {COUNT} (?:source )?`HeadObject`s?(?: of the source)? (?:plus|and) "
    rf"{COUNT} `CopyObject`s? per (?:replica|target))"
)


def number(word: str) -> int:
    return WORDS.get(word.lower()) or int(word)


# --------------------------------------------------------------------------- figures


MEASURED = re.compile(r"\b(measured|measures|took(?! effect)|peak RSS|faster than|slower than|quicker|throughput of)\b", re.I)


def function_names() -> set[str]:
    names = set()
    for path in [*(ROOT / "crates").glob("**/*.rs"), *(ROOT / "tests").glob("**/*.rs")]:
        if "target" in path.parts:
            continue
        names |= set(re.findall(r"\bfn ([a-z][a-z0-9_]+)\s*\(", path.read_text()))
    return names


def test_figures_come_from_the_bench_block_or_name_their_test(docs):
    """A measured figure outside the generated block must name the test that asserts it (a
    test function or file that exists)."""
    functions = function_names()
    problems = []
    for doc in docs:
        for paragraph in re.split(r"\n\s*\n|\n(?=- )", doc.prose()):
            line = " ".join(paragraph.split())
            if not (MEASURED.search(line) and re.search(r"\d", MEASURED.split(line, 1)[-1] + line)):
                continue
            if not re.search(r"\d+(?:[.,]\d+)?\s?(?:ms|s|MiB|KiB|GiB|KB|%|x|(?:objects|replicas|requests)/s)\b", line):
                continue
            named = [t for t in ticks(line) if t in functions or ((ROOT / t).is_file() and "test" in t)]
            if not named:
                problems.append(f"{doc.name}: a measured figure that names no test: {line[:160]}")
    assert not problems, "\n".join(problems)


def test_the_bench_block_is_in_the_performance_page_only(docs):
    holders = [d.name for d in docs if BENCH_BEGIN in d.text]
    assert holders == ["docs/performance.md"], holders
    bench_report = (ROOT / "tests" / "bench_report.py").read_text()
    assert '"docs", "performance.md"' in bench_report, "make bench-docs writes elsewhere than docs/performance.md"


# --------------------------------------------------------------------------- links


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


# Pages linked before they are present in every checkout; checked like the others once present.
OPTIONAL_PAGES: set[str] = set()


def test_links_between_the_docs_resolve(docs):
    problems = []
    for doc in docs:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.prose()):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.path.parent / path).resolve() if path else doc.path
            if not file.exists():
                if str(file.relative_to(ROOT)) in OPTIONAL_PAGES:
                    continue
                problems.append(f"{doc.name}: link to {target}: no such file")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
                problems.append(f"{doc.name}: link to {target}: {file.name} has no heading #{anchor}")
    assert not problems, "\n".join(problems)
