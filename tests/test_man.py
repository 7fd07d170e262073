from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vcl.cli.app import COMMANDS
from vcl.cli.manpage import leaf_commands, render_pages

MAN = Path(__file__).resolve().parents[1] / "man"


def test_committed_man_pages_are_fresh() -> None:
    pages = render_pages()
    expected = {f"vcl-{name.replace(' ', '-')}.1" for name, _, _ in leaf_commands()}
    assert set(pages) == {"vcl.1", *expected}
    assert {name for name, _ in COMMANDS} <= {n.split()[0] for n, _, _ in leaf_commands()}
    committed = {p.name for p in MAN.glob("*.1")}
    assert committed == set(pages), "run: python -m vcl.cli.manpage man"
    for name, text in pages.items():
        assert (MAN / name).read_text() == text, (
            f"man/{name} is stale: python -m vcl.cli.manpage man"
        )


def test_pages_document_options_and_exit_codes() -> None:
    pages = render_pages()
    assert "\\-\\-videos" in pages["vcl-synth.1"] and "\\-\\-shard" in pages["vcl-videos.1"]
    for text in pages.values():
        assert ".SH EXIT STATUS" in text and "\\fB65\\fR" in text and ".SH EXAMPLES" in text


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_renders() -> None:
    out = subprocess.run(
        ["man", "-l", str(MAN / "vcl.1")],
        capture_output=True,
        text=True,
        env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "MANPAGER": "cat"},
    )
    assert out.returncode == 0 and "EXIT STATUS" in out.stdout


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["a", "b"]])
def test_generator_takes_no_option_for_a_folder(tmp_path, monkeypatch, capsys, args) -> None:
    """`python -m vcl.cli.manpage --help` wrote 30 pages into a folder named --help."""
    from vcl.cli.manpage import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == (0 if args[0].startswith("-") else 2)
    assert "usage:" in capsys.readouterr().err and not list(tmp_path.iterdir())
    main([str(tmp_path / "out")])
    assert (tmp_path / "out" / "vcl.1").exists()


def test_synopsis_brackets_optional_arguments_and_dots_once() -> None:
    # vcl demo's OUT_DIR has a default; vcl track's INPUT is required and repeatable
    pages = render_pages()
    assert "\\fBvcl demo\\fR [\\fIOPTIONS\\fR] [\\fIOUT_DIR\\fR]\n" in pages["vcl-demo.1"]
    assert "\\fBvcl track\\fR [\\fIOPTIONS\\fR] \\fIINPUT\\fR...\n" in pages["vcl-track.1"]
    assert "......" not in "".join(pages.values())
