"""The command tree as a whole: credentials, usage errors, exit statuses, the emulator command, extras."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sigma_async import cli
from sigma_async.cli import _main as cli_main

from ._support import ENTRY_POINT, Lines, Server, clean_env, ok, one_error_line, run

# -- credentials, errors, usage ---------------------------------------------------------------------------------


def test_bad_credentials_fail_in_one_line_without_the_secret(server: Server) -> None:
    wrong = "wrong-secret-0123456789"
    by_flag = run(server, "--secret-key", wrong, "channels", "get", "anything")
    line = one_error_line(by_flag)
    assert line.startswith("error: HTTP 401: ") and "(AuthenticationError)" in line
    by_env = run(server, "channels", "get", "anything", env={**server.env, "SIGMA_SECRET_KEY": wrong})
    one_error_line(by_env)
    for result in (by_flag, by_env):
        assert wrong not in result.stdout + result.stderr

    missing = run(None, "channels", "get", "anything", env=clean_env())
    assert "SIGMA_USERNAME" in one_error_line(missing, code=2)


def test_credentials_from_an_env_file(server: Server, tmp_path: Path) -> None:
    env_file = tmp_path / "sigma.env"
    # As the console's "Download as .env file" writes it: no SIGMA_ prefix needed in the file.
    env_file.write_text(f"USERNAME=emulator\nSECRET_KEY=emulator-secret\nAPP_ID=emulator-app\nBASE_URL={server.url}\n")
    created = ok(run(None, "--env-file", str(env_file), "channels", "create", "--name", "from-file", "--json",
                     env=clean_env()))  # fmt: skip
    assert json.loads(created.stdout)["name"] == "from-file"
    missing = run(None, "--env-file", str(tmp_path / "absent.env"), "channels", "get", "x", env=clean_env())
    assert "cannot read env file" in one_error_line(missing, code=2)


@pytest.mark.parametrize(
    "args",
    [
        [], ["channels"], ["channels", "list", "x"], ["watch"], ["watch", "s", "--channel", "c"],
        ["watch", "--channel", "c", "--since", "cursor"], ["sessions", "list", "c", "--limit", "0"],
        ["channels", "get", "x", "--bogus"], ["watch", "s", "--interval", "-1"],
    ],
)  # fmt: skip
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_usage_errors_in_a_real_process(server: Server) -> None:
    result = run(server, "channels", "list")
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr
    bad_id = one_error_line(run(server, "channels", "get", "not/an/id"), code=2)
    assert "not a valid id" in bad_id
    half_s3 = run(server, "channels", "create", "--name", "x", "--s3-bucket", "b")
    assert "--s3-access-key" in one_error_line(half_s3, code=2)
    helped = ok(run(server, "--help"))
    assert "no endpoint that lists channels" in helped.stdout and "sigma-async demo" in helped.stdout


def test_verbose_logs_requests_but_never_the_secret(server: Server) -> None:
    result = run(server, "-vv", "channels", "get", "no-such-channel")
    assert result.returncode == 1
    assert "DEBUG sigma_async: GET /api/livestream/channels/no-such-channel" in result.stderr
    assert "emulator-secret" not in result.stderr and "Traceback" not in result.stderr


# -- emulator and demo ------------------------------------------------------------------------------------------


def test_emulator_subcommand_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [str(ENTRY_POINT), "emulator", "--port", "0", "--username", "ops", "--secret-key", "ops-key",
         "--app-id", "ops-app", "--speed", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        url = Lines(proc.stdout).expect(r"listening on (http://\S+) username=ops app_id=ops-app").group(1)
        env = clean_env(SIGMA_BASE_URL=url, SIGMA_USERNAME="ops", SIGMA_SECRET_KEY="ops-key", SIGMA_APP_ID="ops-app")
        created = json.loads(ok(run(None, "--json", "channels", "create", "--name", "e", env=env)).stdout)
        assert created["appId"] == "ops-app"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill() if proc.poll() is None else None
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize(("flag", "value"), [("--port", "99999"), ("--speed", "0"), ("--port", "many")])
def test_emulator_subcommand_refuses_bad_values_as_usage_errors(flag: str, value: str) -> None:
    result = run(None, "emulator", flag, value, env=clean_env(), timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and flag in result.stderr


# -- command modules and extras ---------------------------------------------------------------------------------


def test_a_command_module_adds_its_command_with_the_common_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A module shaped as COMMAND_MODULES documents it: add_parser(commands, common), a handler given a client.
    (tmp_path / "sigma_cli_hello.py").write_text(
        "async def run(client, args, out):\n"
        "    out.json_line({'hello': args.who, 'app': client.credentials.app_id}) if out.json else out.text('hi')\n"
        "    return 0\n"
        "def add_parser(commands, common):\n"
        "    sub = commands.add_parser('hello', parents=[common], help='say hello')\n"
        "    sub.add_argument('who')\n"
        "    sub.set_defaults(handler=run)\n"
        "    return sub\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("sigma_cli_hello", "sigma_async.cli._not_there"))
    args = ["--base-url", "http://127.0.0.1:9", "--username", "u", "--secret-key", "k", "--app-id", "a"]
    assert cli.main(["hello", "you", "--json", *args]) == 0
    assert json.loads(capsys.readouterr().out) == {"hello": "you", "app": "a"}
    assert "say hello" in cli_main.build_parser().format_help()


def test_a_command_whose_extra_is_missing_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sigma_cli_needs_nats.py").write_text("import nats.js.missing_for_this_test\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("sigma_cli_needs_nats",))
    monkeypatch.setitem(sys.modules, "nats", None)  # as if nats-py were not installed
    assert cli.main(["sigma_cli_needs_nats", "--sink", "-"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: the sigma_cli_needs_nats command needs nats: pip install 'sigma-async[nats]'"


def test_without_an_extra_the_command_line_says_what_to_install() -> None:
    # The command line's own modules failing to import for want of an extra's module (as httpx's fallback).
    code = (
        "import sys\n"
        "class Missing:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'sigma_async.cli._main':\n"
        "            raise ModuleNotFoundError(\"No module named 'rich'\", name='rich')\n"
        "sys.meta_path.insert(0, Missing())\n"
        "from sigma_async.cli import main\n"
        "sys.exit(main(['demo']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert result.returncode == 1, result.stderr
    assert "pip install 'sigma-async[cli]'" in result.stderr and "Traceback" not in result.stderr


def test_plain_http_is_refused_naming_the_flag_not_the_python_argument() -> None:
    env = clean_env(SIGMA_USERNAME="u", SIGMA_SECRET_KEY="k", SIGMA_APP_ID="a")
    refused = one_error_line(run(None, "--base-url", "http://sigma.example", "channels", "get", "x", env=env), code=2)
    assert "--allow-insecure-http" in refused and "allow_insecure_http" not in refused


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(tmp_path: Path) -> None:
    # Reading the env file is start-up, before any request: a pipe that never ends holds the command there.
    fifo = tmp_path / "sigma.env"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sigma_async", "--env-file", str(fifo), "channels", "get", "x"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )  # fmt: skip
    writer = None
    try:
        deadline = time.monotonic() + 30
        while writer is None:  # opening the write end succeeds once the command has the pipe open to read
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the command never read the env file"
                time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if writer is not None:
            os.close(writer)
        proc.kill() if proc.poll() is None else None
        proc.wait()
    assert proc.returncode == 130 and "Traceback" not in err, err
