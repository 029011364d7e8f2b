"""What several commands share: exit codes, Kafka settings and errors, the HTML report's log and page."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tripwire.config import ConfigError, MonitorConfig

if TYPE_CHECKING:
    from tripwire.engine import Engine

# Exit codes (README, "Command line"): 0 done; 1 done, but sinks / retrain did not deliver (demo: an
# incident missed); 2 bad configuration, reference, path or option, nothing done; 3 Kafka unreachable;
# 4 stopped part way (input unreadable past a point, an output not writable), what came before kept;
# 5 every record rejected; 130 interrupted.
EXIT_USAGE = 2
EXIT_KAFKA_UNREACHABLE = 3
EXIT_STOPPED = 4
EXIT_ALL_REJECTED = 5
EXIT_INTERRUPTED = 130

BROKER_HELP = "host:port[,host:port] (default: [kafka] of the config, or the environment)"


def kafka_command(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command that talks to Kafka: Ctrl-C is exit 130, a closed pipe (``| head``) is done, a bad value is 2."""

    @functools.wraps(run)
    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # `tripwire tail | head`
            sys.stdout = open(os.devnull, "w")
            return 0
        except (OSError, ValueError) as error:
            if isinstance(error, ConfigError):
                raise
            print(f"tripwire: {error}", file=sys.stderr)
            return EXIT_USAGE

    return guarded


def kafka_settings(args: argparse.Namespace, config: MonitorConfig | None) -> Any:
    """The broker, security and topics of ``config`` (``--broker`` wins), its secrets masked in every log."""
    from tripwire.logs import add_secrets
    from tripwire.streams.topics import kafka_settings as settings_of

    settings = settings_of(config, broker=getattr(args, "broker", None))
    add_secrets(settings.sasl_password, settings.ssl_password)  # also when they came from the config file
    return settings


def kafka_error(error: Exception, settings: Any) -> int:
    """Say why Kafka could not be reached and what to check; the exit code for it."""
    if settings.security_protocol == "PLAINTEXT":
        hint = "start one with `scripts/kafka.sh start`, or set --broker / TRIPWIRE_KAFKA_BOOTSTRAP"
    else:  # the broker's reason (certificate, authentication) is in aiokafka's log line above
        keys = (["kafka.ssl_cafile"] if settings.uses_ssl else []) + (
            ["kafka.sasl_username", "kafka.sasl_password"] if settings.uses_sasl else [])
        hint = (f"kafka.security_protocol = {settings.security_protocol}: the reason is in the line above; "
                f"check {', '.join(keys)}")
    print(f"tripwire: cannot reach Kafka at {settings.bootstrap_servers}: {type(error).__name__}: {error} ({hint})",
          file=sys.stderr)
    return EXIT_KAFKA_UNREACHABLE


def window_log(args: argparse.Namespace, config: MonitorConfig) -> Any:
    """The ``on_window`` sink the report needs, or None without ``--report``."""
    if args.report is None:
        return None
    from tripwire.report import WindowLog

    return WindowLog(config)


def write_report(path: Path, engine: Engine, log: Any, alerts: list[dict[str, Any]], title: str,
                 facts: list[tuple[str, Any]]) -> bool:
    """Write the HTML report of what ``engine`` saw (windows in ``log``); False when it cannot be written."""
    from tripwire.report import render_report

    references = {name: monitor.reference for name, monitor in engine.monitors.items()}
    page = render_report(log.windows, alerts, engine.config, references, title=title, facts=facts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        print(f"tripwire: --report {path}: cannot write the report ({error.strerror or error})", file=sys.stderr)
        return False
    print(f"report: {path}")
    return True
