"""Sub-commands of `volbot`, one module per domain; each defines `register(main)`."""

from importlib import import_module

# Keep alphabetical; each module adds its click commands/groups to the main group.
MODULES: list[str] = ["catalog", "demo"]


def register_all(main) -> None:
    for name in MODULES:
        import_module(f"bot.commands.{name}").register(main)
