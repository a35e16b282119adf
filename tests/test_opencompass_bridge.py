"""The OpenCompass bridge: shipped configs, the tiny dataset, and (where OpenCompass's venv exists) the configs
as OpenCompass itself reads them. The full smoke (server + OpenCompass run) is ``make opencompass-smoke``."""

import ast
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from agentkit.errors import ConfigError
from agentkit.evals.opencompass import config_dir, config_path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "evals" / "opencompass" / "smoke.sh"
DATA = ROOT / "evals" / "opencompass" / "data" / "tiny_choice.jsonl"
OC_VENV = Path(os.environ.get("OPENCOMPASS_VENV", Path.home() / ".cache" / "agentkit" / "opencompass-venv"))


def test_configs_are_shipped_and_valid_python():
    names = {p.name for p in config_dir().glob("*.py")}
    assert names == {"agentkit_api.py", "tiny_choice.py", "eval_agentkit_smoke.py"}
    for name in names:
        ast.parse(config_path(name).read_text(), filename=name)
    with pytest.raises(ConfigError, match="shipped ones are agentkit_api.py"):
        config_path("missing.py")


def test_run_config_combines_the_model_and_the_dataset():
    tree = ast.parse(config_path().read_text())
    imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert {("agentkit_api", "models"), ("tiny_choice", "datasets")} <= imported


def test_smoke_script_sets_every_variable_the_configs_read():
    read = set()
    for name in ("agentkit_api.py", "tiny_choice.py"):
        read |= set(re.findall(r"os\.environ\.get\('(\w+)'", config_path(name).read_text()))
    assert {"AGENTKIT_BASE_URL", "AGENTKIT_MODEL_NAME", "AGENTKIT_API_KEY", "AGENTKIT_TOKENIZER",
            "AGENTKIT_OC_DATA"} <= read
    script = SMOKE.read_text()
    optional = {"AGENTKIT_MAX_OUT_LEN", "AGENTKIT_BATCH_SIZE"}
    assert all(f"{name}=" in script for name in read - optional), read
    assert "--name agentkit" in script and "AGENTKIT_MODEL_NAME=agentkit" in script
    assert subprocess.run(["bash", "-n", str(SMOKE)]).returncode == 0


def test_tiny_dataset_rows_are_answerable():
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert row["question"] and all(row[letter] for letter in "ABCD")
        assert isinstance(row["answer"], list) and len(row["answer"]) == 1 and row["answer"][0] in "ABCD"
    assert len({row["answer"][0] for row in rows}) == 4  # a constant answer cannot pass by luck


@pytest.mark.skipif(not (OC_VENV / "bin" / "python").is_file(),
                    reason=f"OpenCompass's venv is not at {OC_VENV}: run make opencompass-smoke (or set "
                           "OPENCOMPASS_VENV) to build it")
def test_opencompass_reads_the_configs(tmp_path):
    code = ("import json, sys; from mmengine.config import Config; c = Config.fromfile(sys.argv[1]); "
            "m, d = c.models[0], c.datasets[0]; print(json.dumps({'type': m['type'].__name__, "
            "'base': m['openai_api_base'], 'path': m['path'], 'tokenizer': m['tokenizer_path'], "
            "'data': d['path'], 'abbr': d['abbr']}))")
    env = {**os.environ, "AGENTKIT_BASE_URL": "http://127.0.0.1:9999/v1", "AGENTKIT_MODEL_NAME": "m",
           "AGENTKIT_TOKENIZER": str(tmp_path)}
    env.pop("AGENTKIT_OC_DATA", None)
    done = subprocess.run([str(OC_VENV / "bin" / "python"), "-c", code, str(config_path())], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["type"] == "OpenAISDK" and seen["base"] == "http://127.0.0.1:9999/v1" and seen["path"] == "m"
    assert seen["tokenizer"] == str(tmp_path) and seen["abbr"] == "agentkit-tiny-choice"
    assert Path(seen["data"]).resolve() == DATA.resolve()
