"""The runtime stays light: importing the package or asking for help must not pull in torch."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("code", [
    "import pofa_openvino, pofa_openvino.recipe, pofa_openvino.pipeline, pofa_openvino.runtime.bundle, "
    "pofa_openvino.bench",
    "from pofa_openvino.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
])
def test_no_torch_on_import(code):
    probe = code + "\nimport sys\nassert 'torch' not in sys.modules, 'torch imported'\n" \
                   "assert 'transformers' not in sys.modules, 'transformers imported'"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_runtime_loads_no_toolkit_library():
    """`Bundle`, `SparseModel`, `verify` and the CLI module load neither the recipe schema (pydantic,
    PyYAML) nor rich: the base install has none of them (the clean-venv test runs them there)."""
    probe = ("import sys\nfrom pofa_openvino.runtime import Bundle, SparseModel, verify\n"
             "import pofa_openvino.bundle, pofa_openvino.cli\n"
             "loaded = {name.partition('.')[0] for name in sys.modules}\n"
             "toolkit = {'pydantic', 'yaml', 'rich', 'torch', 'transformers'} & loaded\n"
             "assert not toolkit, toolkit")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_command_line_starts_without_numpy():
    """``pofa-openvino --help`` and argument errors answer before any array library loads: the run
    directory's digests come from the stdlib-only ``runtime.digest``, not the bundle module."""
    probe = ("import sys\nfrom pofa_openvino.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
             "    pass\nassert 'numpy' not in sys.modules, 'numpy imported'")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
