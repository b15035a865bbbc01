"""Command-line plumbing shared by the thin scripts in ``scripts/``.

A script is::

    _CONFIG = cli.define_config_flag()
    _WORKDIR = cli.define_workdir_flag()

    def main(argv):
        stage.train(_CONFIG.value, _WORKDIR.value)

    if __name__ == "__main__":
        cli.run(main)

``cli.run`` turns the failures a user can cause (an unknown ``--config.key``, a bad value, a missing
config file) into one line naming the problem and the fix instead of a traceback.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

FLAGS = flags.FLAGS


def define_config_flag(name: str = "config", default: str | None = None):
    """``--config path/to/config.py[:variant]`` plus ``--config.a.b=value`` overrides."""
    return config_flags.DEFINE_config_file(
        name,
        default,
        "Stage config file, e.g. configs/voca.py or configs/voca.py:smoke.",
        lock_config=True,
    )


def define_workdir_flag(required: bool = True):
    return flags.DEFINE_string(
        "workdir", None, "Run folder: checkpoints, metrics, samples, eval.json.", required=required
    )


def _friendly(exc: BaseException, argv: list[str]) -> str:
    text = str(exc).strip().strip("'\"")
    key = re.search(r"'([^']+)'", str(exc))
    override = next((a for a in argv if a.startswith("--config.")), None)
    if isinstance(exc, (AttributeError, KeyError)):
        name = key.group(1) if key else text
        hint = text.split("\n", 1)[1] if "\n" in text else ""
        return (
            f"unknown config key '{name}'"
            + (f" in {override.split('=')[0]}" if override else "")
            + (f". {hint}" if hint else "")
            + ". Check the spelling against the config file (the resolved config of a run is in "
            "WORKDIR/config.json)."
        )
    return f"{text}"


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing that reports config-override errors in one clear line."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        sys.stderr.write(f"error: {e}\nPass --helpfull to list the flags.\n")
        sys.exit(2)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        sys.stderr.write(f"error: {_friendly(e, argv)}\n")
        sys.exit(2)


def _quiet_libraries(argv: list[str]) -> list[str]:
    # Orbax and absl log every checkpoint step at INFO; a user asks for that with --verbosity.
    if not any(a.startswith(("--verbosity", "-v", "--v=")) for a in argv):
        absl_logging.set_verbosity(absl_logging.WARNING)
    return argv


# Errors a user causes (a missing file, a bad dataset, a conflicting workdir, a diverged run):
# one line naming the problem and the fix, no traceback (set JAXHEAD_DEBUG=1 for one).
USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, KeyError)


def _guarded(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
    def wrapped(argv: list[str]) -> None:
        from jaxhead.train.loop import NonFiniteError
        from jaxhead.train.workdir import WorkdirConflictError

        try:
            main(_quiet_libraries(argv))
        except (*USER_ERRORS, NonFiniteError, WorkdirConflictError) as e:
            if os.environ.get("JAXHEAD_DEBUG"):
                raise
            message = str(e).strip("'\"") if isinstance(e, KeyError) else str(e)
            sys.stderr.write(f"error: {message}\n")
            sys.exit(1)

    return wrapped


def run(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run`` with :func:`parse_flags`, one-line user errors, quiet library logs."""
    app.run(_guarded(main), flags_parser=parse_flags)
