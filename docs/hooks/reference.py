"""MkDocs hook: the configuration and CLI references, generated from the code at build time.

A page that holds the line `<!-- generated: settings -->` gets the table of every `Settings` field
(its variables, default, allowed values, meaning); `<!-- generated: cli -->` gets every command of
the argparse parser with its usage and arguments; `<!-- generated: strategies -->` the table of
the registered reduction strategies. Both are read from the code that defines them
(`vdr_app/config.py`, `vdr_app/cli.py`), so the pages cannot drift from it:

- variables and allowed values come from `Settings.from_env`'s source: the names it reads for each
  field and the bounds or choices it checks them against;
- defaults come from `Settings()`;
- meanings come from the `Settings` docstring (one `name: text` entry per field). A field without
  one is a warning, which `mkdocs build --strict` turns into a failed build.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import fnmatch
import inspect
import logging
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_MARK = "<!-- generated: settings -->"
CLI_MARK = "<!-- generated: cli -->"
STRATEGIES_MARK = "<!-- generated: strategies -->"
log = logging.getLogger("mkdocs.hooks.reference")

_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]{2,}")


def _import_app():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from vdr_app import cli, config

    return config, cli


# -- configuration ------------------------------------------------------------------------------


@dataclasses.dataclass
class Setting:
    field: str
    variables: list[str]
    default: str
    allowed: str
    meaning: str


def _docstring_entries(doc: str) -> dict[str, str]:
    """`name: text` entries of the Settings docstring (Google style, continuation lines indented);
    an entry may name several fields (`host, port:`) or a pattern (`qdrant_*:`)."""
    entries: dict[str, str] = {}
    current = None
    for line in inspect.cleandoc(doc).splitlines():
        entry = re.match(r"^    ([a-z_*, ]+): (.*)$", line)
        if entry:
            current = entry.group(1)
            entries[current] = entry.group(2).strip()
        elif current and line.startswith("        "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def _meaning(field: str, entries: dict[str, str]) -> str | None:
    for names, text in entries.items():
        if any(fnmatch.fnmatchcase(field, name.strip()) for name in names.split(",")):
            return text
    return None


def _literal_names(node: ast.AST, assigned: dict[str, ast.AST]) -> list[str]:
    """Environment variable names in an expression, following local names to their assignment."""
    names = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and _ENV_NAME.fullmatch(sub.value):
            names.append(sub.value)
        elif isinstance(sub, ast.Name) and sub.id in assigned:
            names.extend(_literal_names(assigned[sub.id], {}))
    return list(dict.fromkeys(names))


def _value(node: ast.AST, namespace: dict):
    """A call argument's value: a literal, or an expression over config.py's names (e.g. MODES)."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        try:
            # an expression of config.py itself (e.g. ", ".join(MODES)), evaluated over its own names
            return eval(compile(ast.Expression(node), "<config>", "eval"), dict(namespace))
        except Exception:
            return None


def _call_facts(call: ast.Call, assigned: dict[str, ast.AST], namespace: dict) -> tuple[list[str], str]:
    """(variables read, allowed values) of one `read.kind(NAME, default, ...)` / `env.get(NAME)` call."""
    if not call.args:
        return [], ""
    variables = _literal_names(call.args[0], assigned)
    kind = call.func.attr if isinstance(call.func, ast.Attribute) else ""
    args = [_value(a, namespace) for a in call.args]
    kwargs = {k.arg: _value(k.value, namespace) for k in call.keywords}
    if kind in ("integer", "number") and len(args) >= 4 and None not in args[2:4]:
        low, high = args[2], args[3]
        if kind == "integer":
            return variables, f"whole number, {low:,} to {high:,}"
        return variables, f"number, {low:,g} to {high:,g}"
    if kind == "choice" and len(args) >= 4 and args[3]:
        return variables, str(args[3])
    if kind == "path":
        return variables, {"dir": "a folder", "file": "a file path"}.get(kwargs.get("must_be"), "a path")
    if kind == "text":
        return variables, "text (may be empty)" if kwargs.get("allow_empty") else "text"
    return variables, "text"


def _from_env_facts(config) -> dict[str, tuple[list[str], str]]:
    """field -> (variables, allowed) read from the source of `Settings.from_env`."""
    source = textwrap.dedent(inspect.getsource(config.Settings.from_env))
    function = ast.parse(source).body[0]
    assigned = {t.id: node.value for node in ast.walk(function) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    facts = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "cls":
            for keyword in node.keywords:
                value = keyword.value
                calls = [c for c in ast.walk(value) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                         and c.func.attr in ("integer", "number", "choice", "path", "text", "get")]
                if calls:
                    variables, allowed = _call_facts(calls[0], assigned, vars(config))
                elif isinstance(value, ast.Name) and value.id in assigned:
                    inner = [c for c in ast.walk(assigned[value.id]) if isinstance(c, ast.Call)
                             and isinstance(c.func, ast.Attribute)]
                    variables, allowed = _call_facts(inner[0], assigned, vars(config)) if inner else ([], "")
                else:  # e.g. auth=parse_auth(env.get("VDR_AUTH", "")): the names, and the parser's doc
                    variables, allowed = _literal_names(value, assigned), "see meaning"
                if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id != "cls":
                    parser = getattr(config, value.func.id, None)
                    if parser is not None and parser.__doc__:
                        allowed = parser.__doc__.strip().splitlines()[0]
                facts[keyword.arg] = (variables, allowed)
    return facts


def _shown_default(value) -> str:
    if value in (None, "", ()):
        return "unset"
    text = str(value)
    home = str(Path.home())
    if text.startswith(home):
        text = "~" + text[len(home):]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        text = f"{value:,}"
    return f"`{text}`"


def settings_reference() -> list[Setting]:
    """One row per `Settings` field, in declaration order."""
    config, _ = _import_app()
    entries = _docstring_entries(config.Settings.__doc__ or "")
    facts = _from_env_facts(config)
    defaults = config.Settings()
    rows = []
    for field in dataclasses.fields(config.Settings):
        variables, allowed = facts.get(field.name, ([], ""))
        meaning = _meaning(field.name, entries)
        if meaning is None:
            log.warning("Settings.%s has no `%s: ...` entry in the Settings docstring (vdr_app/config.py)",
                        field.name, field.name)
            meaning = ""
        rows.append(Setting(field.name, variables, _shown_default(getattr(defaults, field.name)), allowed, meaning))
    return rows


_VAR = r"`[A-Z][A-Z0-9_]+`"
_ENV_MENTION = re.compile(rf" ?\(({_VAR}(, |/| or | else )?)+\)|(?<=\(){_VAR}[;,] ")


def _without_variables(meaning: str) -> str:
    """`size limit (`VDR_MAX_UPLOAD_MB`).` -> `size limit.`: the variable column already names them."""
    return _ENV_MENTION.sub("", meaning)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_markdown() -> str:
    lines = ["| variable | `Settings` field | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
    seen: set[str] = set()
    for row in settings_reference():
        variables = ", ".join(f"`{v}`" for v in row.variables) or "— (in code only)"
        if row.variables and seen.issuperset(row.variables):  # derived from a variable listed above
            variables, row.allowed = f"(from {variables})", "—"
        seen.update(row.variables)
        lines.append(f"| {variables} | `{row.field}` | {_cell(row.default)} | {_cell(row.allowed)} | "
                     f"{_cell(_without_variables(row.meaning))} |")
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser):
    """(name, help, subparser) of each command of a parser, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def _argument_rows(parser: argparse.ArgumentParser, skip: set[str]) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            if set(action.option_strings) & skip:
                continue
            metavar = "" if action.nargs == 0 else " " + (action.metavar or action.dest.upper())
            name = ", ".join(f"`{o}{metavar}`" for o in action.option_strings)
        else:
            name = f"`{action.metavar or action.dest}`"
        choices = f" (one of {', '.join(map(str, action.choices))})" if action.choices else ""
        rows.append(f"| {name} | {_cell((action.help or '') + choices)} |")
    return rows


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip()


def cli_commands() -> list[tuple[str, str, argparse.ArgumentParser]]:
    """Every command path (`add`, `view add`, ...) with its help and parser, depth first."""
    _, cli = _import_app()
    found = []

    def walk(parser, path):
        for name, help_text, sub in _subcommands(parser):
            found.append((" ".join(path + [name]), help_text, sub))
            walk(sub, path + [name])

    walk(cli.build_parser(), [])
    return found


def cli_markdown() -> str:
    _, cli = _import_app()
    top = cli.build_parser()
    common = {o for a in top._actions for o in a.option_strings if not isinstance(a, argparse._HelpAction)}
    out = ["### Options of every command", "",
           "Accepted before or after the command (`python -m vdr_app --store s.sqlite add a.pdf` or "
           "`python -m vdr_app add a.pdf --store s.sqlite`).", "",
           "| argument | meaning |", "| --- | --- |", *_argument_rows(top, set()), ""]
    for path, help_text, parser in cli_commands():
        out += [f"### `{path}`", "", (parser.description or help_text).strip(), "",
                "```text", _usage(parser), "```", ""]
        rows = _argument_rows(parser, common)
        if rows:
            out += ["| argument | meaning |", "| --- | --- |", *rows, ""]
    return "\n".join(out)


# -- reduction strategies ---------------------------------------------------------------------


def _param_text(param: dict) -> str:
    if "default_factor" in param:
        factor = param["default_factor"]
        shown = f"factor {factor:g}" if float(factor).is_integer() else f"keep {param['default']:g}"
        return f"`keep` ({shown})"
    return f"`{param['name']}` ({param['default']})"


def strategies_markdown() -> str:
    """The strategy table from the registry (`vdr_app.reduce.describe_strategies`)."""
    _import_app()
    from vdr_app.reduce import describe_strategies

    lines = ["| strategy | kind | parameters (default) | what it does | spec with every default |",
             "| --- | --- | --- | --- | --- |"]
    for s in describe_strategies():
        kind = " + ".join(s["kinds"]) or "—"
        params = ", ".join(_param_text(p) for p in s["params"]) or "—"
        doc = s["doc"] + (" Needs attention." if s["needs_attention"] else "")
        lines.append(f"| `{s['name']}` | {kind} | {_cell(params)} | {_cell(doc)} | `{s['example']}` |")
    return "\n".join(lines)


# -- the hook -----------------------------------------------------------------------------------


def on_page_markdown(markdown: str, page, config, files) -> str:
    if SETTINGS_MARK in markdown:
        markdown = markdown.replace(SETTINGS_MARK, settings_markdown())
    if STRATEGIES_MARK in markdown:
        markdown = markdown.replace(STRATEGIES_MARK, strategies_markdown())
    if CLI_MARK in markdown:
        markdown = markdown.replace(CLI_MARK, cli_markdown())
    return markdown
