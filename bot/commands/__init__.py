"""Sub-commands of `volbot`, one module per domain; each defines `register(main)`.

The tools' commands (`volbot demo`, `volbot wechat-emulator`) live in their own packages and
come in through the `volbot.commands` entry point (pyproject.toml): the shell imports no tool.
"""

from contextlib import contextmanager
from importlib import import_module
from importlib.metadata import entry_points

# Keep alphabetical; each module adds its click commands to the main group, using
# `shared_group` for a group several domains add to (`import`, `menu`, `order`, …).
MODULES: list[str] = ["activities", "backup", "catalog", "console", "dispatch", "pii", "pushes", "reports", "serve",
                      "timebank", "volunteers"]


def register_all(main) -> None:
    for name in MODULES:
        import_module(f"bot.commands.{name}").register(main)
    for plugin in sorted(entry_points(group="volbot.commands"), key=lambda ep: ep.name):
        plugin.load()(main)


def shared_group(main, name: str, help_text: str):
    """The group `name` (e.g. `import`) that several domains' modules add commands to."""
    import click

    existing = main.commands.get(name)
    if isinstance(existing, click.Group):
        return existing
    group = click.Group(name, help=help_text)
    main.add_command(group)
    return group


@contextmanager
def operator_session():
    """Services and one transaction for a command; everything is closed afterwards."""
    from bot.cli import build_services  # bot.cli imports this package

    svc = build_services()
    try:
        with svc.db.transaction() as s:
            yield svc, s
    finally:
        svc.close()


def finish_audit(problems: list[str], summary: str) -> None:
    """Print an audit's problems and its one-line summary; exit 1 when there were any."""
    import sys

    import click

    for problem in problems:
        click.echo(problem)
    click.echo(summary + (": OK" if not problems else f": {len(problems)} problem(s)"))
    if problems:
        sys.exit(1)
