"""The repository stands alone: a bare clone tests itself, so no tracked file may name a path
outside the checkout (the machine it was written on, a folder laid beside it) and the WeChat
vectors the protocol tests replay are inside the tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / n for n in names.decode().split("\0") if n]


def test_no_tracked_file_names_a_path_outside_the_checkout():
    # The checkout's own absolute path, and the folder laid beside it (by path and relatively).
    outside = [str(REPO) + "/", str(REPO.parent / "shared"), "../shared/"]
    found = []
    for path in tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for needle in outside:
            if needle in text and path.name != Path(__file__).name:
                found.append(f"{path.relative_to(REPO)}: {needle}")
    assert not found, found


def test_the_wechat_vectors_ship_with_the_tests():
    samples = REPO / "tests" / "fixtures" / "wechat-samples"
    assert (samples / "README.md").read_text(encoding="utf-8").count("source") >= 1
    assert len(list((samples / "fixtures").rglob("*.xml"))) == 130
