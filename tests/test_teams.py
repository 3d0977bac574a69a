"""The team tree: import from YAML and CSV, materialised paths, subtrees, search, CLI."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.cli import main as volbot
from rules import teams
from store.models import Community, Team
from tests import seeds


def paths(session) -> dict[str, str]:
    return {t.code: t.path for t in session.scalars(select(Team))}


def test_yaml_tree_gets_paths_and_communities(svc):
    seeds.apply(svc, ["vol_teams"])
    with svc.db.transaction() as s:
        p = paths(s)
        ids = {t.code: t.id for t in s.scalars(select(Team))}
        assert p["VT-KW"] == f"/{ids['VT-KW']}/"
        assert p["VT-DF"] == f"/{ids['VT-KW']}/{ids['VT-DG']}/{ids['VT-DF']}/"
        assert teams.by_code(s, "VT-XH").join_policy == "approval"
        assert teams.by_code(s, "VT-DF").community.name == "东风社区"
        assert s.scalar(select(Community).where(Community.code == "VT-C-XH")).street == "东关街道"
        dg = teams.by_code(s, "VT-DG")
        assert {t.code for t in teams.subtree(s, dg)} == {"VT-DG", "VT-DF", "VT-XH"}
        assert teams.in_subtree(teams.by_code(s, "VT-XH"), dg)
        assert not teams.in_subtree(teams.by_code(s, "VT-BS"), dg)


def test_search_by_code_community_street_and_name(svc):
    seeds.apply(svc, ["vol_teams"])
    with svc.db.transaction() as s:
        codes = lambda q: [t.code for t in teams.search(s, q)]  # noqa: E731 - a one-line helper beside its use
        assert codes("VT-XH") == ["VT-XH"]
        assert codes("vt-xh") == ["VT-XH"]
        assert codes("东风") == ["VT-DF"]
        assert codes("东关街道") == ["VT-DF", "VT-XH"]  # a street stands for its squads
        assert codes("医疗") == ["VT-YL"]
        assert codes("火星") == [] and codes("  ") == [] and codes("%") == [] and codes("_") == []
        assert codes("VT-DG") == ["VT-DF", "VT-XH"]  # a detachment is not joined directly


def test_reimport_moves_a_subtree_and_rewrites_paths(svc):
    seeds.apply(svc, ["vol_teams"])
    with svc.db.transaction() as s:
        result = teams.import_rows(s, [{"code": "VT-DG", "name": "东关街道分队", "kind": "detachment",
                                        "parent": "VT-BY"}])
        assert (result.created, result.updated) == (0, 1)
        by, dg, df = (teams.by_code(s, c) for c in ("VT-BY", "VT-DG", "VT-DF"))
        assert dg.path == by.path + f"{dg.id}/" and df.path == dg.path + f"{df.id}/"
        assert teams.in_subtree(df, by)


@pytest.mark.parametrize("rows, message", [
    ([{"code": "A", "name": "甲", "kind": "squad", "parent": "NOPE"}], "unknown parent"),
    ([{"code": "A", "name": "甲", "kind": "club"}], "kind must be"),
    ([{"code": "A", "name": "甲", "kind": "squad", "join_policy": "maybe"}], "join_policy"),
    ([{"code": "A", "name": "甲", "kind": "squad", "parent": "B"},
      {"code": "B", "name": "乙", "kind": "squad", "parent": "A"}], "cycle"),
    ([{"code": "A", "name": "", "kind": "squad"}], "required"),
    ([{"code": "A", "name": "甲", "kind": "squad", "community": "C9"}], "community_name"),
])
def test_bad_rows_refused(svc, rows, message):
    with svc.db.transaction() as s:
        with pytest.raises(teams.TeamImportError, match=message):
            teams.import_rows(s, rows)


def cli_env(svc, tmp_path):
    return {"DATABASE_URL": svc.db.url, "REDIS_URL": svc.redis_url, "VOLBOT_INSTANCE": str(tmp_path),
            "VOLBOT_ENV": "testing"}


def test_cli_imports_csv_and_adds_a_coordinator(svc, tmp_path):
    csv_file = tmp_path / "teams.csv"
    csv_file.write_text(
        "code,name,kind,parent,join_policy,community,community_name,street\n"
        "Q-B,大队,brigade,,,,,\n"
        "Q-S1,一小队,squad,Q-D,approval,Q-C1,一号社区,甲街道\n"
        "Q-D,甲街道分队,detachment,Q-B,,,,甲街道\n", encoding="utf-8")
    runner = CliRunner()
    env = cli_env(svc, tmp_path)
    out = runner.invoke(volbot, ["import", "teams", str(csv_file)], env=env)
    assert out.exit_code == 0, out.output
    assert "3 created" in out.output and "communities: 1 created" in out.output
    out = runner.invoke(volbot, ["coordinator", "add", "--team", "Q-D", "--openid", "o_c", "--name", "周"], env=env)
    assert out.exit_code == 0 and "of Q-D" in out.output, out.output
    out = runner.invoke(volbot, ["coordinator", "add", "--team", "NOPE", "--openid", "o_c", "--name", "周"], env=env)
    assert out.exit_code != 0 and "no team NOPE" in out.output
    with svc.db.transaction() as s:
        s1, d = teams.by_code(s, "Q-S1"), teams.by_code(s, "Q-D")
        assert teams.in_subtree(s1, d) and s1.join_policy == "approval"
