"""Operating links: `pause`, `resume`, `send-now`, `clear`, `relink`, `fetch`, `link release|change-url`, `adopt`,
`redrive`; and `health`."""

from __future__ import annotations

import sys
from types import ModuleType

import click

from federationd.cli.base import (
    RET_REFUSED,
    RET_USAGE,
    State,
    done,
    emit,
    fail,
    guarded,
    json_option,
    main,
    pass_state,
)
from federationd.cli.links import link


def _lifecycle() -> ModuleType:
    from federationd import lifecycle  # noqa: PLC0415 - the broker stack loads only for verbs that use it

    return lifecycle


def _affected(sites: list[str], what: str, as_json: bool = False) -> None:
    done(as_json, f"{what}: {', '.join(sites)}" if sites else f"{what}: no linked partner", sites=sites)


@main.command()
@click.argument("site", required=False)
@json_option
@pass_state
@guarded
def pause(state: State, site: str | None, as_json: bool) -> None:
    """Pause one link, or the whole site: nothing is sent or consumed (partners' messages wait in the broker).

    \b
    Examples:
      federationd pause site-b     # one link
      federationd pause            # the whole site (a test server restored from production)
    """
    _lifecycle().pause(state.runtime(), site)
    done(as_json, f"paused {site or 'the whole site'}; the running daemon stops sending and consuming within a "
         "second", paused=site)


@main.command()
@click.argument("site", required=False)
@json_option
@pass_state
@guarded
def resume(state: State, site: str | None, as_json: bool) -> None:
    """Undo `pause` (a pause set in the config file stays until the file says otherwise).

    \b
    Example:
      federationd resume site-b
    """
    still = _lifecycle().resume(state.runtime(), site)
    for reason in still:
        click.echo(f"federationd: warning: still paused: {reason}", err=True)
    done(as_json, f"resumed {site or 'the whole site'}", resumed=site, still_paused=list(still))


@main.command("send-now")
@click.argument("site", required=False)
@json_option
@pass_state
@guarded
def send_now(state: State, site: str | None, as_json: bool) -> None:
    """Send pending changes at once, skipping the quiet period (one partner, or all)."""
    _affected(_lifecycle().send_now(state.runtime(), site), "sending now to", as_json)


@main.command()
@click.argument("site", required=False)
@json_option
@pass_state
@guarded
def clear(state: State, site: str | None, as_json: bool) -> None:
    """Clear a send stuck "sending" and the schedule; the running daemon abandons a send still in flight.

    Pending changes go at the next send (nothing is lost)."""
    _affected(_lifecycle().clear(state.runtime(), site), "cleared the send schedule of", as_json)


@main.command()
@click.argument("site")
@click.option("--now", "at_once", is_flag=True, help="Send our snapshot at once, even outside "
              "schedule.snapshot_windows.")
@json_option
@pass_state
@guarded
def relink(state: State, site: str, at_once: bool, as_json: bool) -> None:
    """Resynchronise with a partner: full snapshots both ways under new epochs (after a restore from backup).
    Outside schedule.snapshot_windows our snapshot waits for the next window, unless --now.

    \b
    Examples:
      federationd relink site-b          # our snapshot at the next send (or when its window opens)
      federationd relink site-b --now    # at once, busy hours or not
    """
    from federationd.tokens import iso  # noqa: PLC0415

    waits = _lifecycle().relink(state.runtime(), site, at_once=at_once)
    message = (f"relink with {site}: our snapshot and the request for theirs go at the next send" if waits is None
               else f"relink with {site}: the request for their snapshot goes at the next send; ours waits for "
               f"its window (schedule.snapshot_windows) until {iso(waits)} (`relink {site} --now` sends it at once)")
    done(as_json, message, site=site, snapshot_waits_until=iso(waits))


@main.command()
@click.argument("site")
@json_option
@pass_state
@guarded
def fetch(state: State, site: str, as_json: bool) -> None:
    """Ask a partner to send what it has pending now (at most once per its relink interval; its pause wins)."""
    _lifecycle().fetch(state.runtime(), site)
    done(as_json, f"asked {site} to send what it has pending now (the request goes at our next send)", site=site)


@link.command("release")
@click.argument("site")
@click.option("--local", is_flag=True, help="The partner cannot be reached: stop here now (it is told when it can).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (required without a terminal).")
@json_option
@pass_state
@guarded
def link_release(state: State, site: str, local: bool, yes: bool, as_json: bool) -> None:
    """Release a link: both sides stop, credentials are revoked, the partner's people and org data are deleted
    here (schedules stay). Asks first, unless --yes.

    \b
    Example:
      federationd link release site-b --yes
    """
    if not yes:
        if not sys.stdin.isatty():
            fail("link release deletes the partner's data here: confirm with --yes when not on a terminal", RET_USAGE)
        click.confirm(f"Release the link with {site}? Its employees, departments, positions, groups and company "
                      "record are deleted here", abort=True, err=True)
    _lifecycle().release(state.runtime(), site, local)
    done(as_json, f"released the link with {site}", site=site, state="stopped")


@link.command("change-url")
@click.argument("urls", metavar="URL...", nargs=-1, required=True)
@json_option
@pass_state
@guarded
def link_change_url(state: State, urls: tuple[str, ...], as_json: bool) -> None:
    """Make URL our broker's public endpoint (amqps://HOST:PORT/VHOST; several URLs: every public node of our
    broker's cluster): new link tokens carry it, and every partner is told (linked ones, and those awaiting their
    start that gave us a credential)."""
    url: str | list[str] = urls[0] if len(urls) == 1 else list(urls)
    told = _lifecycle().change_url(state.runtime(), url)
    if as_json:
        done(True, "", public_url=url, told=told)
    else:
        _affected(told, "the new endpoint goes at the next send to")
    if [u.rstrip("/") for u in state.config.broker.public_urls] != [u.rstrip("/") for u in urls]:
        click.echo("federationd: warning: new link tokens carry the new endpoint; also set broker.public_url in "
                   "the config file (status, check-config and the daemon warn until it says the same)", err=True)


@main.command()
@click.option("--i-am-the-site", "confirmed", is_flag=True, help="Confirm this server is the real site.")
@json_option
@pass_state
@guarded
def adopt(state: State, confirmed: bool, as_json: bool) -> None:
    """Lift the guard against a copied database: declare this installation the site."""
    if not confirmed:
        fail("adopt makes this installation the site; say so with --i-am-the-site (never on a test copy)")
    _lifecycle().adopt(state.runtime())
    done(as_json, "this installation is now the site; restart or reload the daemon to resume")


@main.command()
@click.argument("site")
@click.option("--dry-run", is_flag=True, help="Only count the dead letters; move nothing.")
@json_option
@pass_state
@guarded
def redrive(state: State, site: str, dry_run: bool, as_json: bool) -> None:
    """Move the partner's dead letters (federation.dead.SITE) back to its inbound queue for another try."""
    from federationd.broker.redrive import redrive as move  # noqa: PLC0415
    from federationd.store import reading  # noqa: PLC0415

    rt = state.runtime()
    with reading(rt.engine) as conn:
        _links().require(conn, site)
    with rt.own_channel() as channel:
        result = move(channel, site, own_user=rt.own.user, dry_run=dry_run)

    def text() -> None:
        if dry_run:
            click.echo(f"{result.waiting} dead letter(s) from {site} would be moved back")
        else:
            click.echo(f"moved {result.moved} of {result.waiting} dead letter(s) from {site} back to its inbound "
                       "queue")
    emit(as_json, result.as_json(dry_run), text)


@main.command()
@json_option
@pass_state
@guarded
def health(state: State, as_json: bool) -> None:
    """Is the daemon running, consuming, its database answering, and is it the active one? Exit 0 only if ok."""
    from federationd.cli.health import check  # noqa: PLC0415

    document = check(state.runtime())

    def text() -> None:
        for key in ("ok", "daemon", "consuming", "database", "active"):
            click.echo(f"{key:<10} {'yes' if document[key] else 'no'}")
        click.echo(f"{'held by':<10} {document['active_daemon'] or '-'}")
    emit(as_json, document, text)
    if not document["ok"]:
        sys.exit(RET_REFUSED)


def _links() -> ModuleType:
    from federationd import links  # noqa: PLC0415

    return links
