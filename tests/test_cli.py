"""The command line as a user meets it: help, plugins, errors, lazy imports."""

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ["torch", "open_clip", "cv2", "faiss", "numpy", "fastapi"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cover_id", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from cover_id.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr
    for name in ["index", "identify", "verify", "train", "serve", "info", "plugins"]:
        assert name in out.stdout


def test_subcommand_help_is_lazy_too() -> None:
    code = (
        "import sys\nfrom cover_id.cli import main\n"
        "try:\n    main(['index', '--help'])\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "--refs" in out.stdout and "LOADED []" in out.stdout, out.stdout + out.stderr


def test_plugins_lists_builtin_components() -> None:
    out = run("plugins")
    assert out.returncode == 0
    for name in ["clip", "local", "quad", "geometric", "identify"]:
        assert name in out.stdout


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("cover-id ")


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    out = run("index", "--refs", str(tmp_path / "nope"), "--out", str(tmp_path / "idx"), "--encoder", "local")
    assert out.returncode != 0
    assert out.stderr.strip().startswith("error:") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = run("info", str(tmp_path / "nope"))
    assert out.returncode != 0 and "index not found" in out.stderr and "Traceback" not in out.stderr
    out = run("index", "--out", str(tmp_path / "idx"))
    assert out.returncode != 0 and "--refs" in out.stderr


def test_unknown_encoder_names_the_choices(covers: Path, tmp_path: Path) -> None:
    out = run("index", "--refs", str(covers), "--out", str(tmp_path / "i"), "--encoder", "nope")
    assert out.returncode == 2 and "unknown encoder 'nope'" in out.stderr and "local" in out.stderr


def test_index_and_info_end_to_end(covers: Path, tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    out = run("index", "--refs", str(covers), "--out", str(idx), "--encoder", "local", "-q")
    assert out.returncode == 0, out.stderr
    assert "indexed 6 references" in out.stdout
    info = run("info", str(idx), "--json")
    data = json.loads(info.stdout)
    assert data["count"] == 6 and data["encoder"]["name"] == "local" and data["keypoints"] > 100


def test_config_file_and_env_reach_commands(covers: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("encoder: nope-from-yaml\n")
    out = run("--config", str(cfg), "index", "--refs", str(covers), "--out", str(tmp_path / "i"))
    assert "nope-from-yaml" in out.stderr
    env_out = subprocess.run(
        [sys.executable, "-m", "cover_id", "index", "--refs", str(covers), "--out", str(tmp_path / "i")],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "COVER_ID_ENCODER": "nope-from-env"},
    )
    assert "nope-from-env" in env_out.stderr
