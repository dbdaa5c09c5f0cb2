"""The library stays headless: importing it never loads the app's toolkit."""

import subprocess
import sys


def test_import_localpref_does_not_load_textual() -> None:
    code = "import sys, localpref, localpref.cli; print('textual' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert output == "False"


def test_cli_parser_builds_without_textual() -> None:
    code = ("import sys; from localpref.cli import build_parser; build_parser(); "
            "print('textual' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert output == "False"
