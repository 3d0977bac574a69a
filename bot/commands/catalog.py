"""`volbot import catalog FILE` (replace the needs menu) and `volbot menu show` (print the
custom menu as WeChat's menu/create takes it, after checking it).

The needs menu a district imports is stored in SQL (`catalog_versions`), so every web and
queue process uses it from the next message on; old orders keep the names they were made
with.
"""

from __future__ import annotations

import json
import sys

import click

from bot.cli import build_services
from bot.commands import shared_group


def register(main: click.Group) -> None:
    imp = shared_group(main, "import", "Import district data from files.")
    menu = shared_group(main, "menu", "The custom menu at the bottom of the chat.")

    @imp.command("catalog")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--dry-run", is_flag=True, help="Only check the file.")
    def import_catalog(file, dry_run):
        """Replace the needs menu (需求菜单) with FILE (YAML or JSON, the format of
        menus/needs.yaml). The file is checked as a whole first; nothing changes if any
        part of it is wrong."""
        from menus.catalog import CatalogError, load

        try:
            catalog = load(file)
        except CatalogError as e:
            click.echo(f"{file}: {len(e.problems)} problem(s), nothing imported:", err=True)
            for p in e.problems:
                click.echo(f"  - {p}", err=True)
            sys.exit(1)
        summary = f"{len(catalog.categories)} categories, {len(catalog.subs)} sub-categories"
        if dry_run:
            click.echo(f"{file}: valid ({summary})")
            return
        from rules.orders import import_catalog as store_import

        svc = build_services()
        try:
            with svc.db.transaction() as s:
                version = store_import(s, catalog, source=str(file))
            click.echo(f"needs menu version {version.id} in use: {catalog.district or '(district not named)'}, {summary}")
        finally:
            svc.close()

    @menu.command("show")
    def menu_show():
        """Print the custom menu JSON (checked against WeChat's limits)."""
        from menus.custom_menu import MenuError, load

        try:
            data = load()
        except MenuError as e:
            click.echo("custom_menu.json breaks WeChat's rules:", err=True)
            for p in e.problems:
                click.echo(f"  - {p}", err=True)
            sys.exit(1)
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
