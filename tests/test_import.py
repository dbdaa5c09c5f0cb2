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


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_the_command_line_starts_without_numpy_numba_or_the_engine() -> None:
    """What runs before ``cli.main`` (where a Ctrl-C is handled) loads none of the heavy
    modules: a Ctrl-C at a command's start is a cancelled command, not a traceback."""
    code = ("import sys, localpref, localpref.cli; "
            "print(sorted({'numpy', 'numba', 'llama_cpp'} & set(sys.modules)))")
    assert _run_python(code).stdout.strip() == "[]"


def test_every_public_name_loads_on_first_use_and_is_its_module_s_object() -> None:
    import localpref
    from localpref import api, batches, decoding, errors, methods, presets

    homes = {"Model": api, "Chat": api, "load": api, "Amulet": methods, "PAD": methods,
             "Sampling": methods, "recommended_method": methods, "Result": decoding,
             "SettingsError": errors, "PRESETS": presets}
    for name, module in homes.items():
        assert getattr(localpref, name) is getattr(module, name)
    assert localpref.batch is batches.run.batch
    assert localpref.kernels.sample is not None
    for name in localpref.__all__:
        assert getattr(localpref, name) is not None
    try:
        localpref.Amulett  # noqa: B018
    except AttributeError as error:
        assert "Amulett" in str(error)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
    namespace: dict[str, object] = {}
    exec("from localpref import *", namespace)
    assert namespace["Amulet"] is methods.Amulet and namespace["kernels"] is localpref.kernels
    # each name once, loaded or not (a loaded one was listed twice), and no helper of the
    # module's own
    names = dir(localpref)
    assert len(names) == len(set(names)) and set(localpref.__all__) <= set(names)
    assert not {"Any", "TYPE_CHECKING", "importlib", "annotations"} & set(names)
    assert "__version__" in names


def test_the_package_says_it_is_typed() -> None:
    """Without ``py.typed`` a type checker skips the package's hints (PEP 561): mypy revealed
    ``Any`` for ``load().generate(...)`` and let ``max_tokens="5"`` pass."""
    from pathlib import Path

    import localpref

    package = Path(localpref.__file__).parent
    assert (package / "py.typed").is_file()
    pyproject = (package.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert 'localpref = ["catalog.toml", "py.typed"]' in pyproject  # shipped in the wheel


def test_ctrl_c_while_a_command_loads_its_modules_exits_130_without_a_traceback() -> None:
    """The interrupt arrives while NumPy/Numba load (an import hook raises it there, where a
    real Ctrl-C in the first half second lands)."""
    code = """
import sys
import localpref.cli

class InterruptAtNumba:
    def find_spec(self, name, path=None, target=None):
        if name == "numba":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, InterruptAtNumba())
sys.exit(localpref.cli.main(["generate", "hello", "--max-tokens", "4"]))
"""
    completed = _run_python(code)
    assert completed.returncode == 130, completed.stderr
    assert completed.stderr.strip() == ""  # no traceback: the terminal's ^C ends the line


def test_a_ctrl_c_that_a_c_extension_turns_into_an_import_error_exits_130() -> None:
    """numba's C extension, stopped by a Ctrl-C while it loads, raises "numba._devicearray
    failed to import" with the KeyboardInterrupt as its context: a cancelled command too."""
    code = """
import sys
import localpref.cli

class InterruptedExtension:
    def find_spec(self, name, path=None, target=None):
        if name == "numba":
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise ImportError("numba._devicearray failed to import")
        return None

sys.meta_path.insert(0, InterruptedExtension())
sys.exit(localpref.cli.main(["generate", "hello", "--max-tokens", "4"]))
"""
    completed = _run_python(code)
    assert completed.returncode == 130, completed.stderr
    assert completed.stderr.strip() == ""
    broken = code.replace("try:\n                raise KeyboardInterrupt\n            "
                          "except KeyboardInterrupt:\n                ", "if True:\n"
                          "                ")
    assert "raise KeyboardInterrupt" not in broken  # a plain ImportError stays a failure
    assert _run_python(broken).returncode == 1
