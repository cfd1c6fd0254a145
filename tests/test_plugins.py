"""Plugins through real entry-point metadata: a third-party encoder and command, name clashes, copies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

PLUGIN = '''
"""A third-party cover-id plugin: a colour-histogram encoder and a command."""
import numpy as np
import typer

from cover_id.encoders.base import Encoder, l2_normalize


class HistEncoder(Encoder):
    name = "hist"

    def __init__(self, bins: int = 8) -> None:
        self.bins = bins

    @property
    def dim(self) -> int:
        return self.bins**3

    def spec(self) -> dict:
        return {"name": self.name, "dim": self.dim, "params": {"bins": self.bins}}

    def encode_images(self, images: list) -> np.ndarray:
        rows = []
        for im in images:
            q = (im.reshape(-1, 3).astype(np.int64) * self.bins) // 256
            codes = (q[:, 0] * self.bins + q[:, 1]) * self.bins + q[:, 2]
            rows.append(np.bincount(codes, minlength=self.dim).astype(np.float32))
        return l2_normalize(np.stack(rows)) if rows else np.zeros((0, self.dim), np.float32)


class NotAnEncoder:
    name = "plain"


app = typer.Typer()


@app.command()
def hello(name: str = "world") -> None:
    print(f"hello {name} from a plugin")
'''

ENTRY_POINTS = """
[cover_id.encoders]
hist = fakeplug:HistEncoder
local = fakeplug:HistEncoder
plain = fakeplug:NotAnEncoder

[cover_id.commands]
hello = fakeplug:app
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder on PYTHONPATH holding the plugin module and its dist-info (as pip would install it)."""
    root = tmp_path_factory.mktemp("site")
    (root / "fakeplug.py").write_text(PLUGIN)
    info = root / "fakeplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    return root


def cli(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "cover_id", *args], capture_output=True, text=True, env=env, timeout=600, cwd=cwd
    )


def test_plugins_lists_third_party_components_and_the_clash(site: Path) -> None:
    out = cli(site, "plugins")
    assert out.returncode == 0, out.stderr
    assert "hist" in out.stdout and "hello" in out.stdout and "fakeplug" in out.stdout
    assert "clash: encoder 'local' from fakeplug (fakeplug:HistEncoder) is ignored" in out.stdout


def test_third_party_command_and_encoder_run_through_the_cli(site: Path, covers: Path, tmp_path: Path) -> None:
    hello = cli(site, "hello", "--name", "cover")
    assert hello.returncode == 0 and "hello cover from a plugin" in hello.stdout, hello.stderr
    idx = tmp_path / "idx"
    built = cli(site, "index", "--refs", str(covers), "--out", str(idx), "--encoder", "hist", "-q")
    assert built.returncode == 0, built.stderr
    manifest = json.loads((idx / "manifest.json").read_text())
    assert manifest["encoder"]["name"] == "hist" and manifest["encoder"]["dim"] == 512
    found = cli(site, "identify", str(covers / "cover_003.jpg"), "--index", str(idx), "--json")
    assert found.returncode == 0, found.stderr
    answer = json.loads(found.stdout)
    assert answer["decision"] == "accept" and answer["match"]["id"] == "cover-003"


def test_a_builtin_cannot_be_shadowed(site: Path, covers: Path, tmp_path: Path) -> None:
    idx = tmp_path / "idx"
    out = cli(site, "index", "--refs", str(covers), "--out", str(idx), "--encoder", "local", "-q")
    assert out.returncode == 0, out.stderr
    spec = json.loads((idx / "manifest.json").read_text())["encoder"]
    assert spec["name"] == "local" and "clusters" in spec["params"]  # the built-in, not fakeplug's


def test_a_plugin_of_the_wrong_kind_is_one_clear_error(site: Path, covers: Path, tmp_path: Path) -> None:
    out = cli(site, "index", "--refs", str(covers), "--out", str(tmp_path / "i"), "--encoder", "plain")
    assert out.returncode == 2
    assert (
        "encoder plugin 'plain' (fakeplug:NotAnEncoder) is not a subclass of cover_id.encoders.base.Encoder"
        in out.stderr
    )


def test_builtins_are_found_without_third_party_plugins() -> None:
    from cover_id.plugins import available, clashes

    assert {"local", "clip"} <= set(available("encoders"))
    assert available("detectors")["quad"].value == "cover_id.detectors.quad:QuadDetector"
    assert available("rerankers")["geometric"].value == "cover_id.rerankers.geometric:GeometricReranker"
    assert not any(clashes(kind) for kind in ("encoders", "detectors", "rerankers"))


def test_per_thread_copies_keep_their_settings(covers: Path, tmp_path: Path) -> None:
    """serve gives each worker thread its own detector and re-ranker, configured like the original."""
    from cover_id.identify import Identifier
    from cover_id.index.build import build_index
    from cover_id.rerankers.geometric import GeometricParams, GeometricReranker
    from cover_id.server.collection import make_thread_safe

    build_index(tmp_path / "idx", refs=covers, settings={"encoder": "local"}, show_progress=False)
    ident = Identifier.from_index(tmp_path / "idx", {"threads": 1, "detect_side": 300})
    ident.reranker = GeometricReranker(GeometricParams(ratio=0.7))
    make_thread_safe(ident)
    seen: list[tuple[int, float]] = []
    worker = threading.Thread(target=lambda: seen.append((ident.detector.max_side, ident.reranker.params.ratio)))
    worker.start()
    worker.join()
    assert seen == [(300, 0.7)]
    assert ident.identify(covers / "cover_002.jpg")["match"]["id"] == "cover-002"
