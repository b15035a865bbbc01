"""Command-line plumbing shared by the thin scripts in ``scripts/``: one error path for all.

An absl script is::

    _CONFIG = cli.define_config_flag()
    _WORKDIR = cli.define_workdir_flag()

    def main(argv):
        stage.train(_CONFIG.value, _WORKDIR.value)

    if __name__ == "__main__":
        cli.run(main)

and an argparse one (``scripts/preprocess.py``, ``python -m jaxhead.data.synthetic``) ends with
``cli.run_plain(main)``. Both turn every mistake a user can make (a missing or unknown config
file, variant or key, a bad value, a missing or damaged file, a workdir that is a file, busy, not
writable or holds another run, a full disk, Ctrl-C) into one line ``error: <problem and fix>``
and a non-zero exit code, without a traceback (``JAXHEAD_DEBUG=1`` shows it). Library code raises
the classes of :func:`user_message`; it never prints or exits itself.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from jaxhead.train.errors import UserError

FLAGS = flags.FLAGS

# Exit codes: 1 a user error at run time, 2 a bad command line, 130 interrupted (as shells do).
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

# Operating-system errors that are about the user's paths or machine, not a bug.
_OS_USER_ERRNOS = {
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.ENOTEMPTY,
    errno.ENAMETOOLONG,
}


# The config flags defined by this process; parse_flags loads them (ml_collections defers it).
_CONFIG_FLAGS: list = []
_CONFIG_DEFAULTS: dict[str, str] = {}  # name -> the config a command without --NAME uses
_OS_USER_CLASSES = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    NotADirectoryError,
    IsADirectoryError,
)


def define_config_flag(name: str = "config", default: str | None = None):
    """``--config path/to/config.py[:variant]`` plus ``--config.a.b=value`` overrides.

    A ``default`` is not given to ml_collections (which would load it, and parse the command
    line's overrides against it, while the script is imported, outside :func:`parse_flags`'s
    one-line errors): :func:`parse_flags` passes ``--NAME=default`` when the command has none.
    """
    holder = config_flags.DEFINE_config_file(
        name,
        None,
        "Stage config file, e.g. configs/voca.py or configs/voca.py:smoke"
        + (f" (default {default})." if default else "."),
        lock_config=True,
    )
    if default is None:
        flags.mark_flag_as_required(name)
    else:
        _CONFIG_DEFAULTS[name] = default
    _CONFIG_FLAGS.append(holder)
    return holder


def _with_config_defaults(argv: list[str]) -> list[str]:
    """``argv`` with ``--NAME=default`` for each defaulted config flag the command leaves out."""
    added = [
        f"--{name}={default}"
        for name, default in _CONFIG_DEFAULTS.items()
        if not any(a == f"--{name}" or a.startswith(f"--{name}=") for a in argv[1:])
    ]
    return argv[:1] + added + argv[1:]


def define_workdir_flag(required: bool = True):
    return flags.DEFINE_string(
        "workdir", None, "Run folder: checkpoints, metrics, samples, eval.json.", required=required
    )


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain (absl wraps a config file's error twice)."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _chain_texts(exc: BaseException) -> list[str]:
    texts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts.append(_text(exc))
        exc = exc.__cause__ or exc.__context__
    return texts


def _text(exc: BaseException) -> str:
    """An exception's own text (a ``KeyError`` wraps its message in quotes)."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def _config_flag_message(exc: BaseException, argv: list[str]) -> str | None:
    """The one line for a failure of ``--config FILE[:variant]`` or ``--config.key=value``."""
    flag = next((m for m in re.findall(r"--([\w.]+)=", str(exc)) if m.startswith("config")), None)
    root = _root_cause(exc)
    text = _text(root).strip()
    if isinstance(root, (KeyError, AttributeError)) and "config" in str(exc) + " ".join(argv):
        # ml_collections: "'stepz'\nDid you mean "steps" instead of "stepz"?" (an outer link of
        # the chain holds the hint, the innermost only the name)
        texts = " ".join(_chain_texts(exc))
        name = re.search(r"'\\*'?([\w-]+)", text)
        name = name.group(1) if name else text
        suggestion = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', texts)
        if suggestion:
            name = suggestion.group(2)
        hint = f' Did you mean "{suggestion.group(1)}"?' if suggestion else ""
        override = next((a.split("=")[0] for a in argv if a.startswith("--config.")), None)
        where = f" in {flag and '--' + flag or override}" if (flag or override) else ""
        return (
            f"unknown config key '{name}'{where}.{hint} Check the spelling against the config "
            "file (the resolved config of a run is in WORKDIR/config.json)."
        )
    if "Failed loading config file" in text or isinstance(root, FileNotFoundError):
        path = next((a.split("=", 1)[-1] for a in argv if a.startswith("--config=")), None)
        if path is None and "--config" in argv:
            path = argv[argv.index("--config") + 1]
        return (
            f"config file {path or ''} cannot be loaded: "
            f"{_last_line(text)}. Pass an existing config file, e.g. --config configs/voca.py"
        )
    if "Error whilst parsing config file" in str(exc) or flag == "config":
        return f"--config: {_last_line(text)}"
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing that reports every command-line error in one clear line."""
    try:
        remaining = FLAGS(_with_config_defaults(argv))
        for holder in _CONFIG_FLAGS:
            # A file that failed to load is an object raising on first use: use it now, so its
            # error is a command-line error and not a traceback in the middle of a run.
            getattr(holder.value, "keys", None)
        return remaining
    except Exception as e:  # noqa: BLE001 - any failure here is a bad command line
        if os.environ.get("JAXHEAD_DEBUG"):
            raise
        missing = re.search(r"Flag --(\w+) must have a value other than None", str(e))
        if missing:
            example = " configs/voca.py" if missing.group(1) == "config" else " VALUE"
            name = missing.group(1)
            message = f"--{name} is required; pass it, e.g. --{name}{example}"
        else:
            message = _config_flag_message(e, argv)
        if message is None:
            message = _last_line(str(e).strip())
            if isinstance(e, flags.UnrecognizedFlagError):
                message += ". Pass --helpfull to list the flags."
        sys.stderr.write(f"error: {message}\n")
        sys.exit(EXIT_USAGE)


def _quiet_libraries(argv: list[str]) -> list[str]:
    # Orbax and absl log every checkpoint step at INFO; a user asks for that with --verbosity.
    if not any(a.startswith(("--verbosity", "-v", "--v=")) for a in argv):
        absl_logging.set_verbosity(absl_logging.WARNING)
    return argv


def user_message(exc: BaseException) -> str | None:
    """The one line for an error a user can fix, or ``None`` for a bug (shown with a traceback).

    User errors: :class:`jaxhead.train.errors.UserError` (workdir conflicts, a busy workdir,
    checkpoints, non-finite training), ``ValueError`` (bad data: ``DatasetError``; bad values),
    ``KeyError`` (an unknown name), ``FileNotFoundError`` and the operating system's errors about
    the user's paths (not writable, a file where a folder belongs, a full disk).
    """
    if isinstance(exc, KeyboardInterrupt):
        return (
            "interrupted (Ctrl-C); files are only ever replaced whole, so nothing is half-written."
            " Re-run the same command to resume from the last checkpoint / finished step"
        )
    if isinstance(exc, (UserError, ValueError, KeyError)):
        return _text(exc).strip()
    if isinstance(exc, OSError) and not exc.strerror and isinstance(exc, _OS_USER_CLASSES):
        return str(exc)  # raised by jaxhead with its own message
    if isinstance(exc, OSError) and (
        isinstance(exc, _OS_USER_CLASSES) or exc.errno in _OS_USER_ERRNOS
    ):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free some space (or choose a folder on another disk) and re-run"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = "choose a path you can write, or fix its permissions"
        elif exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY):
            fix = "choose another path"
        else:
            fix = "check the path"
        where = f": {exc.filename}" if exc.filename else ""
        reason = exc.strerror or str(exc)
        return f"{reason}{where}; {fix}" if exc.strerror else f"{reason}; {fix}"
    return None


def _exit_on_user_error(main: Callable[[list[str]], object], argv: list[str]) -> object:
    try:
        return main(argv)
    except (Exception, KeyboardInterrupt) as e:
        message = user_message(e)
        if message is None or os.environ.get("JAXHEAD_DEBUG"):
            raise
        sys.stderr.write(f"error: {message}\n")
        sys.exit(EXIT_INTERRUPTED if isinstance(e, KeyboardInterrupt) else EXIT_ERROR)


def run(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run`` with :func:`parse_flags`, one-line user errors, quiet library logs."""
    app.run(
        lambda argv: _exit_on_user_error(main, _quiet_libraries(argv)),
        flags_parser=parse_flags,
    )


def run_plain(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> None:
    """For argparse scripts: ``main(argv)`` with the same one-line errors; exits with its code."""
    try:
        code = _exit_on_user_error(main, sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # Ctrl-C while argparse itself runs
        sys.stderr.write(f"error: {user_message(KeyboardInterrupt())}\n")
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(int(code or 0))
