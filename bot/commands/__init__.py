"""Sub-commands of `volbot`, one module per domain; each defines `register(main)`."""

from importlib import import_module

# Keep alphabetical; each module adds its click commands/groups to the main group.
MODULES: list[str] = ["activities", "backup", "catalog", "console", "demo", "dispatch", "pushes", "serve", "volunteers"]


def register_all(main) -> None:
    import click

    for name in MODULES:
        before = {k: v for k, v in main.commands.items() if isinstance(v, click.Group)}
        import_module(f"bot.commands.{name}").register(main)
        # A module that declares a group another module already made (`menu`, `import`)
        # replaces it; the earlier module's sub-commands move into the new group.
        for key, old in before.items():
            new = main.commands.get(key)
            if new is not old and isinstance(new, click.Group):
                for sub_name, sub in old.commands.items():
                    new.commands.setdefault(sub_name, sub)


def shared_group(main, name: str, help_text: str):
    """The group `name` (e.g. `import`) that several domains' modules add commands to."""
    import click

    existing = main.commands.get(name)
    if isinstance(existing, click.Group):
        return existing
    group = click.Group(name, help=help_text)
    main.add_command(group)
    return group
