"""Every subcommand, misused as a new user would: one ``error: ...`` line, exit 2, never a traceback.

Each case runs ``cover-id`` in a fresh subprocess, so what is checked is what a
shell user sees (the console-script entry, its exception handling, exit codes).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MISSING = "/nonexistent/cover-id-test"

# (arguments, what the one error line must contain); every case must exit 2.
CASES: list[tuple[list[str], str]] = [
    # the group itself
    (["nope"], "no such command 'nope'"),
    (["--bogus"], "no such option: --bogus"),
    (["--config"], "--config"),
    (["--config", f"{MISSING}.yaml", "plugins"], "config file not found"),
    # index
    (["index"], "--out"),
    (["index", "--out"], "--out"),
    (["index", "--refs", "refs"], "--out"),
    (["index", "--out", "o", "--bogus"], "--bogus"),
    (["index", "--out", "o", "--refs", "r", "--threads", "many"], "--threads"),
    (["index", "--out", "o", "--refs", "r", "--metadata", "m.jsonl"], "exactly one of"),
    (["index", "--out", "o", "--refs", MISSING], "not found"),
    # identify
    (["identify"], "photos"),
    (["identify", "x.jpg"], "--index"),
    (["identify", "x.jpg", "--index"], "--index"),
    (["identify", "x.jpg", "--index", "i", "--top-k", "abc"], "--top-k"),
    (["identify", "x.jpg", "--index", "i", "--max-side", "1.5"], "--max-side"),
    (["identify", "x.jpg", "--index", "i", "--accept-score", "high"], "--accept-score"),
    (["identify", "-x.jpg", "--index", "i"], "put -- before"),
    (["identify", "x.jpg", "--index", MISSING], "index not found"),
    # verify
    (["verify"], "--index"),
    (["verify", "--index", "i", "--views", "x"], "--views"),
    (["verify", "--index", "i", "--bogus"], "--bogus"),
    (["verify", "--index", MISSING], "index not found"),
    # train
    (["train"], "--out"),
    (["train", "--out", "h.pt", "--epochs", "x"], "--epochs"),
    (["train", "--out", "h.pt", "--lr", "fast"], "--lr"),
    # serve
    (["serve"], "--index"),
    (["serve", "--index", "i", "--port", "http"], "--port"),
    (["serve", "--index", "i", "--max-upload-mb", "big"], "--max-upload-mb"),
    (["serve", "--index", MISSING], "index not found"),
    # info
    (["info"], "index"),
    (["info", "i", "--limit", "x"], "--limit"),
    (["info", MISSING], "index not found"),
    # plugins
    (["plugins", "--bogus"], "--bogus"),
    (["plugins", "extra"], "extra"),
]


def cover_id(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cover_id", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_every_usage_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda case: cover_id(case[0], tmp_path), CASES))
    problems = []
    for (args, expect), out in zip(CASES, results):
        lines = out.stderr.strip().splitlines()
        ok = (
            out.returncode == 2
            and "Traceback" not in out.stderr + out.stdout
            and len(lines) == 1
            and lines[0].startswith("error: ")
            and expect.lower() in lines[0].lower()
        )
        if not ok:
            problems.append(f"cover-id {' '.join(args)} -> rc {out.returncode}, stderr {out.stderr.strip()!r}")
    assert not problems, "\n".join(problems)


def test_bare_command_prints_the_help(tmp_path: Path) -> None:
    out = cover_id([], tmp_path)
    assert out.returncode == 0 and "Commands" in out.stdout and "identify" in out.stdout
    assert "Traceback" not in out.stderr


def test_subcommands_are_covered() -> None:
    """A new subcommand must be added to CASES above."""
    from cover_id.plugins import available

    builtin = {name for name, ep in available("commands").items() if ep.value.startswith("cover_id.")}
    covered = {args[0] for args, _ in CASES if args and not args[0].startswith("-")}
    assert builtin <= covered | {"nope"}, sorted(builtin - covered)


def test_installed_dependencies_satisfy_the_pins() -> None:
    """The versions we run (and test) with are the ones pyproject.toml asks for."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wrong = []
    for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(spec)
        if req.name == "playwright":
            continue  # only the browser test needs it, and it skips without it
        try:
            have = version(req.name)
        except PackageNotFoundError:
            wrong.append(f"{req.name}: not installed (need {req.specifier})")
            continue
        if not req.specifier.contains(have, prereleases=True):
            wrong.append(f"{req.name} {have} does not satisfy {req.specifier}")
    assert not wrong, "; ".join(wrong)


def test_cli_does_not_need_the_separate_click_package() -> None:
    """typer ships its own click; the CLI must catch *those* exceptions, not the separate package's."""
    probe = "import sys; sys.modules['click'] = None\nimport cover_id.cli\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
