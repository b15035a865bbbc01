"""One clear line instead of a traceback (issue 16, item 15): the one error path of every script."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from jaxhead.train import cli
from jaxhead.train.errors import WorkdirConflictError
from jaxhead.train.workdir import read_run_config

ROOT = pathlib.Path(__file__).parents[1]
TOY = pathlib.Path(__file__).with_name("toy_stage.py")
SCRIPTS = ROOT / "scripts"


def _env() -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("JAXHEAD_DEBUG", None)
    return env


def run(*args, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        cwd=ROOT,
    )


def one_line(proc: subprocess.CompletedProcess, code: int | None = None) -> str:
    """The stderr of a refused command: non-zero exit, one `error:` line, no traceback."""
    assert proc.returncode != 0, proc.stdout
    if code is not None:
        assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--config", "configs/nosuch.py"], "config file configs/nosuch.py cannot be loaded"),
        (["--config", "configs/sync.py:nosuch"], "unknown config variant 'nosuch'"),
        (["--config", "configs/sync.py:smoke,res=64"], "unknown config variant 'res'"),
        (["--config", "configs/gpvae.py:smoke,variant"], None),  # a str variant needs a value
        ([], "--config is required"),
        (["--config", "configs/sync.py:smoke", "--config.train.stepz=3"], 'Did you mean "steps"'),
        (["--config", "configs/sync.py:smoke", "--config.train.steps=abc"], "steps=abc"),
        (["--config", "configs/sync.py:smoke", "--config.train.steps=-5"], "train.steps=-5"),
        (["--config", "configs/sync.py:smoke", "--no_such_flag"], "no_such_flag"),
    ],
)
def test_config_mistakes_are_one_line(tmp_path, args, expected):
    proc = run(SCRIPTS / "train_sync.py", *args, "--workdir", tmp_path / "run")
    if expected is None:  # `variant` alone sets a string variant to True: refused as a variant
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        return
    assert expected in one_line(proc)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("--config.data.no_such_field=1", "no_such_field"),
        ("--config.model.width=wide", "width=wide"),
        ("--config.data.source", "data.source"),
    ],
)
def test_ablation_config_mistakes_are_one_line(tmp_path, override, expected):
    proc = run(SCRIPTS / "gpvae_ablation.py", "--workdir", tmp_path / "abl", override)
    assert expected in one_line(proc)
    assert not (tmp_path / "abl").exists()


def test_a_defaulted_config_flag_reports_a_bad_override_in_one_line(tmp_path):
    """scripts/avatar.py's --config has a default: its overrides are checked like the others'
    (they were parsed while the script was imported, a traceback)."""
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    proc = run(SCRIPTS / "avatar.py", clip, "--workdir", tmp_path / "av", "--config.data.nosuch=1")
    assert "unknown config key 'nosuch'" in one_line(proc, cli.EXIT_USAGE)
    assert not (tmp_path / "av").exists()


def test_unknown_key_keeps_the_hint_and_names_the_key(tmp_path):
    proc = run(TOY, f"--config={TOY}", f"--workdir={tmp_path}", "--config.train.stepz=1")
    line = one_line(proc, cli.EXIT_USAGE)
    assert "unknown config key 'stepz' in --config.train.stepz" in line
    assert 'Did you mean "steps"' in line and "'\\'" not in line


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_bad_workdir_is_one_line(tmp_path, kind):
    if kind == "file":
        workdir = tmp_path / "file"
        workdir.write_text("x")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes everywhere")
        (tmp_path / "ro").mkdir(mode=0o500)
        workdir = tmp_path / "ro" / "run"
    proc = run(TOY, f"--config={TOY}", f"--workdir={workdir}")
    assert "--workdir" in one_line(proc, cli.EXIT_ERROR)


def test_missing_checkpoint_of_render_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"data": {"fps": 25.0}}))
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"")
    proc = run(
        SCRIPTS / "render.py", "--workdir", tmp_path, "--audio", audio, "--out", tmp_path / "o.mp4"
    )
    assert "no checkpoint" in one_line(proc)
    assert "cannot schedule new futures" not in proc.stderr


def test_pose_out_without_a_generated_pose_is_one_line(tmp_path):
    proc = run(
        SCRIPTS / "render.py", "--workdir", tmp_path, "--audio", tmp_path / "a.wav",
        "--out", tmp_path / "o.mp4", "--pose_out", tmp_path / "p.npz",
    )  # fmt: skip
    assert "--pose_from gpvae" in one_line(proc)
    assert not (tmp_path / "p.npz").exists()


def _default_sigint():
    # The child gets the default SIGINT disposition (Python then installs its own handler)
    # even when the test runner was started with SIGINT ignored (a shell's background job).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_is_one_line_and_resumable(tmp_path):
    cmd = [
        sys.executable,
        str(TOY),
        f"--config={TOY}",
        f"--workdir={tmp_path}",
        # Far more steps than the wait for checkpoint 10 needs: on a loaded machine an async
        # checkpoint can appear late, and the run must still be running when Ctrl-C comes.
        "--config.train.steps=4000",
        "--config.train.checkpoint_every=5",
        "--config.toy.step_delay_s=0.05",
    ]
    proc = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    deadline = time.time() + 240
    try:
        while not (tmp_path / "checkpoints" / "10").is_dir():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = subprocess.CompletedProcess(cmd, proc.returncode, out.decode(), err.decode())
    assert "interrupted (Ctrl-C)" in one_line(done, cli.EXIT_INTERRUPTED)
    assert not (tmp_path / ".lock").read_text().strip()  # the lock is released


@pytest.mark.parametrize(
    "case, expected",
    [
        ("file", "is a file"),
        ("non_empty", "pass --overwrite"),
        ("identities", "--identities >= 1"),
        ("seconds", "--seconds >= 1"),
    ],
)
def test_synthetic_generator_misuse_is_one_line(tmp_path, case, expected):
    out = tmp_path / "out"
    extra = []
    if case == "file":
        out.write_text("x")
    elif case == "non_empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "identities":
        extra = ["--identities", "0"]
    else:
        extra = ["--seconds", "-1"]
    proc = run("-m", "jaxhead.data.synthetic", "--out", out, *extra)
    line = one_line(proc)
    assert expected in line and "overwrite=True" not in line.split("(")[0]
    if case == "non_empty":
        assert (out / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == (
        ["out"] if case in ("file", "non_empty") else []
    )


def test_user_message_classes():
    assert cli.user_message(ValueError("bad value; fix it")) == "bad value; fix it"
    assert cli.user_message(KeyError("no 'x'; fix it")) == "no 'x'; fix it"
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/a/config.json")
    assert "No space left on device: /runs/a/config.json; free some space" in cli.user_message(full)
    assert cli.user_message(WorkdirConflictError("busy")) == "busy"
    assert "interrupted" in cli.user_message(KeyboardInterrupt())
    assert cli.user_message(RuntimeError("a bug")) is None  # bugs keep their traceback
    assert cli.user_message(AttributeError("a bug")) is None


def test_run_folder_of_another_stage_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": {"hidden": 3}, "train": {}}))
    with pytest.raises(WorkdirConflictError, match="another stage, not a GP-VAE run.*finetune"):
        read_run_config(tmp_path, ("finetune", "model.cme_depth"), "a GP-VAE", "train it")
    with pytest.raises(WorkdirConflictError, match="no config.json"):
        read_run_config(tmp_path / "x", ("finetune",), "a GP-VAE", "train it")
    assert read_run_config(tmp_path, ("model.hidden",), "a toy", "x").model.hidden == 3


def test_gpvae_workdir_of_another_stage_is_one_line(tmp_path):
    from jaxhead.gpvae.generate import generate_pose_blink

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"model": {"hidden": 3}}))
    with pytest.raises(WorkdirConflictError) as info:
        generate_pose_blink(tmp_path, num_frames=4)
    assert cli.user_message(info.value) and "not a GP-VAE run" in str(info.value)


@pytest.mark.parametrize("case", ["existing", "gif"])
def test_render_checks_out_before_rendering(tmp_path, case):
    out = tmp_path / ("have.mp4" if case == "existing" else "x.gif")
    if case == "existing":
        out.write_bytes(b"my video")
    proc = run(
        SCRIPTS / "render.py", "--workdir", tmp_path / "nowhere", "--sequence", "0", "--out", out
    )
    line = one_line(proc)
    assert ("exists; pass --overwrite" if case == "existing" else ".mp4 files only") in line
    assert "nowhere" not in line  # refused before the run folder is even read
    if case == "existing":
        assert out.read_bytes() == b"my video"


def test_unreadable_checkpoints_are_one_line_naming_the_file(tmp_path):
    args = [TOY, f"--config={TOY}", f"--workdir={tmp_path}", "--config.train.checkpoint_every=5"]
    assert run(*args, "--config.train.steps=5").returncode == 0
    for path in (tmp_path / "checkpoints").rglob("*"):
        if path.is_file() and path.parent.name == "d":  # TensorStore's array data, truncated
            path.write_bytes(path.read_bytes()[:50])
    (tmp_path / "eval.json").unlink()
    line = one_line(run(*args, "--config.train.steps=5"))
    assert "cannot restore any checkpoint" in line and "/checkpoints/5/state/d/" in line
