"""verify in a separate environment that has only numpy and LiteRT installed: TensorFlow is never needed."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from ..conftest import ROOT


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory):
    venv = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # what a Raspberry Pi gets from `pip install tinydistill[device]`: numpy, click, rich, LiteRT
    p = subprocess.run(pip + ["-e", f"{ROOT}[device]"], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot install tinydistill[device] into a fresh venv (no package index?): {p.stderr[-200:]}")
    return venv


def test_verify_in_numpy_litert_only_env(device_venv, tmp_path):
    py = str(device_venv / "bin" / "python")
    listing = subprocess.run([py, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    names = {p["name"].lower() for p in json.loads(listing.stdout)}
    assert "tensorflow" not in names and "tf-keras" not in names and "ai-edge-litert" in names
    # a bundle made on the host
    from click.testing import CliRunner

    from tinydistill.cli import main as cli

    out = tmp_path / "out"
    here = os.path.dirname(os.path.abspath(__file__))
    tiny = os.path.join(here, "..", "..", "examples", "mnist", "teacher.h5")
    r = CliRunner().invoke(cli, ["compress", tiny, "--stats", tiny.replace("teacher.h5", "teacher.stats.npz"),
                                 "--inputs", "100", "--steps", "2", "--epochs", "1", "--width", "0.5", "-o", str(out),
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["bundle", str(out), "-o", str(tmp_path / "d.zip")])
    assert r.exit_code == 0, r.output
    zipfile.ZipFile(tmp_path / "d.zip").extractall(tmp_path / "dev")
    code = ("import sys, runpy; sys.argv=['verify.py', sys.argv[1]]; "
            "runpy.run_path(sys.argv[1] + '/verify.py', run_name='__main__')")
    probe = ("import sys, json, runpy; from tinydistill.fitting import ondevice; r = ondevice.verify_bundle(sys.argv[1]); "
             "print(json.dumps({'tf': 'tensorflow' in sys.modules, 'agreement': r['agreement']}))")
    p = subprocess.run([py, "-c", code, str(tmp_path / "dev")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([py, "-c", probe, str(tmp_path / "dev")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["tf"] is False and res["agreement"] >= 0.995
    # the installed console script too
    p = subprocess.run([str(device_venv / "bin" / "tinydistill"), "verify", str(tmp_path / "dev")],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "agreement" in p.stdout, p.stderr
