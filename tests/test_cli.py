import json

from hlx_vulkan import cli


def test_info_lists_devices_and_choice(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "chosen: [" in out and "features:" in out and "float controls:" in out


def test_info_json(capsys, monkeypatch):
    assert cli.main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["devices"] and data["chosen"] is not None
    assert "max_compute_workgroup_invocations" in data["devices"][0]["limits"]


def test_info_reports_failed_selection(capsys, monkeypatch):
    monkeypatch.setenv("HLX_DEVICE", "no-such-gpu-anywhere")
    assert cli.main(["info"]) == 1
    out = capsys.readouterr().out
    assert "no device chosen" in out and "name does not contain" in out
