"""The CLI's frame: the `federationd` group, the config it loads, one-line errors and named exit codes.

Every verb exits 0 on success, or non-zero with one line on standard error saying what is wrong.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from federationd import __version__
from federationd.config import Config, config_path, load_config
from federationd.errors import ConfigError, FederationError, StoreError, TransportError
from federationd.runtime import Runtime
from federationd.store import db_error

RET_OK = 0
RET_FAILED = 1  # refused: unknown partner, bad token, invalid data, no such record, ...
RET_USAGE = 2  # click's own code for bad arguments
RET_CONFIG = 3
RET_UNAVAILABLE = 4  # a broker or the database could not be reached

F = TypeVar("F", bound=Callable[..., Any])




def fail(message: str, code: int = RET_FAILED) -> NoReturn:
    click.echo(f"federationd: {message}", err=True)
    sys.exit(code)


def guarded(func: F) -> F:
    """Turn our errors into one line on stderr and a named exit code."""
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), RET_CONFIG)
        except TransportError as exc:
            fail(str(exc), RET_UNAVAILABLE)
        except StoreError as exc:
            fail(str(exc), RET_UNAVAILABLE)
        except FederationError as exc:
            fail(str(exc))
        except SQLAlchemyError as exc:
            fail(str(db_error(exc)), RET_UNAVAILABLE)
    return wrapper  # type: ignore[return-value]


class State:
    def __init__(self, path: str | None) -> None:
        self.path = config_path(path)
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.path)
        return self._config

    def runtime(self) -> Runtime:
        return Runtime(self.config)


pass_state = click.make_pass_decorator(State)


def emit(as_json: bool, document: Any, text: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(document, ensure_ascii=False, indent=None))
    else:
        text()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_file", metavar="FILE", help="Site config (else $FEDERATIOND_CONFIG, else "
              "/etc/federationd/federationd.yaml).")
@click.version_option(__version__, prog_name="federationd")
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """Link this groupware site with partner sites over RabbitMQ-over-TLS."""
    logging.basicConfig(level=logging.WARNING, format="federationd: %(levelname)s: %(message)s")
    # pika logs every failed connection attempt at ERROR with its internals; we translate the failure into one
    # line naming the partner (errors.TransportError) and log that instead.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    ctx.obj = State(config_file)
