"""Reading Prosody's config file as data: what it says, and what it cannot be read for."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from werkzeug.test import Client

from prosody_store.cli.common import Settings
from prosody_store.cli.run import build_parser
from prosody_store.config import ConfigError, read_config
from tests.test_http_app import DEMO, basic
from wsgi_app import app_from_environment

CONFIG = '''-- Prosody configuration (a Lua script, read here as data)
admins = { "Boss@Example.COM" }
data_path = "{data}"
plugin_paths = { "/usr/local/lib/prosody/modules" };
modules_enabled = {
	"roster"; -- Allow users to have a roster
	"saslauth";
}
limits = { c2s = { rate = "10kb/s" } }
authentication = 'internal_hashed'
--[[ a long
comment ]]
VirtualHost "example.com"
	admins = { "local-admin@example.com" }
VirtualHost "disabled.example"
	enabled = false
Component "muc.example.com" "muc"
	modules_enabled = { "muc_mam" }
Include "conf.d/*.cfg.lua"
'''


def write_config(tmp_path: Path, text: str, data: str = "/srv/prosody") -> Path:
    path = tmp_path / "prosody.cfg.lua"
    path.write_text(text.replace("{data}", data))
    return path


def test_literal_settings_and_sections(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "localhost.cfg.lua").write_text('VirtualHost "localhost"\n')
    config = read_config(write_config(tmp_path, CONFIG))
    assert config.problems == []
    assert config.data_path == "/srv/prosody"
    assert config.admins == ["Boss@Example.COM"]
    assert config.hosts == ["example.com", "localhost"]
    assert config.host_admins == {"example.com": ["local-admin@example.com"]}
    assert config.globals["limits"] == {"c2s": {"rate": "10kb/s"}}
    assert config.globals["modules_enabled"] == ["roster", "saslauth"]
    muc = [s for s in config.sections if s.kind == "Component"]
    assert [(s.host, s.options) for s in muc] == [("muc.example.com", {"modules_enabled": ["muc_mam"]})]


@pytest.mark.parametrize("line,what", [
    ('data_path = os.getenv("DATA")', "variables"),
    ('admins = { "a" .. "@example.com" }', "expected"),
    ('local x = 1', "not an assignment"),
    ('print("hi")', "not an assignment"),
])
def test_what_cannot_be_read_is_reported_with_its_place(tmp_path, line, what):
    config = read_config(write_config(tmp_path, f'admins = {{ "a@b" }}\n{line}\nVirtualHost "x.example"\n'))
    assert len(config.problems) == 1
    problem = config.problems[0]
    assert ":2:" in problem and what in problem, problem
    assert config.admins == ["a@b"] and config.hosts == ["x.example"]  # the rest is still read


def test_nothing_in_the_file_runs(tmp_path):
    marker = tmp_path / "ran"
    config = read_config(write_config(tmp_path, f'x = os.execute("touch {marker}")\n'))
    assert config.problems and not marker.exists()


def test_missing_file_and_include_loop(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        read_config(tmp_path / "missing.cfg.lua")
    loop = tmp_path / "loop.cfg.lua"
    loop.write_text('Include "loop.cfg.lua"\n')
    with pytest.raises(ConfigError, match="Include loop"):
        read_config(loop)


def test_debian_default_config_reads_without_problems():
    path = Path("/etc/prosody/prosody.cfg.lua")
    if not path.exists():
        pytest.skip("Debian's prosody is not installed")
    config = read_config(path)
    assert config.problems == []
    assert "localhost" in config.hosts


def test_cli_takes_data_path_from_config(tmp_path, monkeypatch):
    monkeypatch.delenv("PROSODY_DATA_PATH", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    path = write_config(tmp_path, CONFIG, str(data))
    args = build_parser().parse_args(["--prosody-config", str(path), "hosts"])
    assert Settings(args).data_path == str(data)


def test_service_from_environment_uses_config_admins(tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(DEMO, data)
    path = write_config(tmp_path, 'admins = { "admin@localhost" }\ndata_path = "{data}"\n'
                        'VirtualHost "localhost"\n', str(data))
    monkeypatch.setenv("PROSODY_CONFIG", str(path))
    for name in ("PROSODY_DATA_PATH", "PROSODY_ADMINS", "PROSODY_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    app_from_environment.cache_clear()
    try:
        client = Client(app_from_environment())
        response = client.get("/data/localhost/bob/roster", headers=basic("admin@localhost", "demo-admin"))
        assert response.status_code == 200
        assert "alice@localhost" in response.get_json()
        response = client.get("/data/localhost/bob/roster", headers=basic("alice@localhost", "wonderland"))
        assert response.status_code == 403
    finally:
        app_from_environment.cache_clear()
        os.environ.pop("PROSODY_CONFIG", None)
