"""``liqbot run`` as a user runs it: a real process, its stdin, stdout, signals and exit code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.cli import main

ENV_WITHOUT_TOKENS = {
    k: v
    for k, v in os.environ.items()
    if k not in ("LIQBOT_TELEGRAM_TOKEN", "LIQBOT_DISCORD_TOKEN", "LIQBOT_CONFIG")
}


def liqbot(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())", *args]


def spawn(args: list[str], cwd: Path, stdin: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
    env = {**ENV_WITHOUT_TOKENS, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        liqbot(*args),
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_help_explains_tokens_and_demo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "LIQBOT_TELEGRAM_TOKEN" in out and "LIQBOT_DISCORD_TOKEN" in out
    assert "--demo" in out and "liqbot run --demo" in out


def test_without_a_token_it_says_what_to_set(tmp_path: Path) -> None:
    proc = spawn(["run"], tmp_path, stdin=subprocess.DEVNULL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "set LIQBOT_TELEGRAM_TOKEN and/or LIQBOT_DISCORD_TOKEN" in err
    assert "--demo" in err and "Traceback" not in err


def test_a_bad_config_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("alerts:\n  tick_s: -5\n")
    proc = spawn(["run", "--demo"], tmp_path, stdin=subprocess.DEVNULL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "alerts.tick_s" in err and "Traceback" not in err


def test_demo_answers_commands_and_delivers_alerts(tmp_path: Path) -> None:
    proc = spawn(
        ["run", "--demo", "--duration", "12", "--speed", "1200", "--chart-dir", "charts"], tmp_path
    )
    out, err = proc.communicate("/liqmap btc\n/alerts\nliqs eth\n/nonsense\n", timeout=120)
    assert proc.returncode == 0, err
    assert "Cumulative short liquidation leverage peaks" in out
    charts = list((tmp_path / "charts").glob("*.png"))
    assert charts and charts[0].read_bytes().startswith(b"\x89PNG")
    assert "ALERT: " in out  # the demo's console alerts fire at the squeeze's approach
    assert "short cluster" in out
    assert "Unknown command" in out or "/help" in out
    assert "Traceback" not in err


def test_sigterm_stops_gracefully(tmp_path: Path) -> None:
    proc = spawn(["run", "--demo", "--speed", "600"], tmp_path)
    assert proc.stdout is not None
    started = time.monotonic()
    line = proc.stdout.readline()
    while "liqbot is running" not in line and time.monotonic() - started < 60:
        line = proc.stdout.readline()
    assert "liqbot is running" in line
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopping" in err and "Traceback" not in err
