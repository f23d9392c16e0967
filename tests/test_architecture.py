"""The architecture's rules, checked: who may import whom (import-linter), and no torch on the serving path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_import_contracts_hold() -> None:
    """preprocessing knows no models or serving; serving and the gateway reach no torch, models,
    training or export; training imports no serving code (contracts in pyproject.toml)."""
    run = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_a_broken_rule_is_caught(tmp_path: Path) -> None:
    """The linter fails when serving imports torch: the contracts are not vacuous."""
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["serving", "export"]\ninclude_external_packages = true\n\n'
        '[[tool.importlinter.contracts]]\nname = "export must not reach torch (false on purpose)"\n'
        'type = "forbidden"\nsource_modules = ["export"]\nforbidden_modules = ["torch"]\n'
    )
    run = subprocess.run([str(BIN / "lint-imports"), "--no-cache", "--config", str(config)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode != 0
    assert "BROKEN" in run.stdout


def test_analyze_never_imports_torch(triton, face_video: Path, tmp_path: Path) -> None:
    """`emofuse analyze` in the default mode, against a running Triton: torch is never loaded."""
    script = (
        "import json, sys\n"
        "from emofuse.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'models', 'training', 'export'))\n"
        "print(json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    args = ["analyze", str(face_video), "--out", str(tmp_path), "--no-video", "--triton", triton.grpc_url]
    run = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}
