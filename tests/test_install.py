"""A non-editable ``pip install .`` into a fresh virtual environment ships the datasets.

The package is built from a copy of the sources and installed into a new venv in a temporary
folder; Python then runs isolated (``-I``: no current directory, no ``PYTHONPATH`` on
``sys.path``) from another empty folder, so ``bnn`` can only come from the venv, and loads a1a,
a1a.t, Cora and CiteSeer from the installed package data. Offline: pip gets ``--no-index
--no-deps --no-build-isolation`` and builds with the setuptools already installed here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: What a build needs: the project file, the readme it names, the three packages.
SOURCES = ("pyproject.toml", "README.md", "qsgd", "bnn", "qkernels")

CHECK = """
import json, sys
import bnn, bnn.data as d
a1a = d.load_a1a(val_fraction=0.0)
cora = d.load_planetoid("cora")
citeseer = d.load_planetoid("citeseer", sparse=True)
print(json.dumps({
    "bnn": bnn.__file__, "sys_path": sys.path, "files": a1a.info["files"] + [cora.info["path"]],
    "a1a": a1a.x_train.shape[0], "a1a_t": a1a.x_test.shape[0],
    "cora": cora.num_nodes, "citeseer": citeseer.num_nodes,
}))
"""


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{argv[:4]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_non_editable_install_in_a_fresh_venv_loads_the_shipped_datasets(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    py = str(venv / "bin" / "python")
    site = Path(
        _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    # The dependencies (torch, numpy, pip, setuptools, ...) come from this interpreter's
    # site-packages, appended after the venv's own. A plain path line: the .pth files found
    # there (the repository's editable-install hook among them) are not run, so the only
    # `bnn` on the path is the one pip puts into the venv.
    deps = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (site / "zz_test_dependencies.pth").write_text("\n".join(deps) + "\n")

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "PYTHON")) and k != "QSGD_DATA_ROOT"
    }
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", MPLBACKEND="Agg")
    _run(
        [py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--ignore-installed", str(src)],
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    shutil.rmtree(src)  # nothing of the sources is left to import from

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = _run([py, "-I", "-c", CHECK], cwd=elsewhere, env=env, timeout=300).stdout
    record = json.loads(out.strip().splitlines()[-1])

    installed = site.resolve()
    assert Path(record["bnn"]).resolve().parent.parent == installed
    assert not any(Path(p).resolve() == REPO for p in record["sys_path"] if p)
    for f in record["files"]:
        assert Path(f).resolve().is_relative_to(installed / "bnn" / "datasets"), f
    assert (record["a1a"], record["a1a_t"]) == (1605, 30956)
    assert (record["cora"], record["citeseer"]) == (2708, 3327)
