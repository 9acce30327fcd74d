"""The FreeSWITCH configuration overlay in ``freeswitch-conf/``.

Every file is run through a small copy of FreeSWITCH's XML preprocessor (the rules of
``preprocess()`` in src/switch_xml.c, written down in ``fs_preprocess`` below) and
parsed; then the parts the orchestrator relies on are checked: the dialplan contract
(socket, then the fallback), the fallback's bridge / record logic (evaluated with the
condition rules of mod_dialplan_xml), the event socket's listen address, ACL and
password, and the directory binding of mod_xml_curl.
"""
from __future__ import annotations

import glob
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parent.parent / "freeswitch-conf"

# Globals that a stock FreeSWITCH 1.10 has defined before our fragment is read
# (computed at start-up or set by the stock vars.xml).
STOCK_GLOBALS = {
    "core_uuid": "4b1a3f0e-0000-4000-8000-000000000001",
    "local_ip_v4": "192.0.2.10",
    "sounds_dir": "/usr/share/freeswitch/sounds",
    "recordings_dir": "/var/lib/freeswitch/recordings",
    "global_codec_prefs": "OPUS,G722,PCMU,PCMA",
    "hold_music": "local_stream://moh",
}

_VAR = re.compile(r"\$\$\{([^}]*)\}")
_PRE = re.compile(r'<X-PRE-PROCESS\s+cmd="([^"]*)"\s+data="([^"]*)"\s*/>', re.IGNORECASE)


def fs_preprocess(path: Path, globals_: dict[str, str], env: dict[str, str], depth: int = 0) -> str:
    """FreeSWITCH's preprocessor, the parts this overlay uses.

    Line by line: ``$${name}`` is replaced by the global (empty when unknown) in the
    whole line, comments included; a line holding ``<include>``, ``</include>`` or
    ``<?`` is dropped; a line holding a pre-process instruction runs it and is dropped
    (``set``: NAME=VALUE, trimmed; ``env-set``: NAME=$ENVVAR copies the environment
    variable and does nothing when it is unset; ``include``: a glob relative to the
    including file's folder).
    """
    assert depth < 10, "include recursion"
    out: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines(keepends=True):
        line = _VAR.sub(lambda m: globals_.get(m.group(1), ""), raw)
        if "<include>" in raw or "</include>" in raw or "<?" in raw:
            continue
        if "x-pre-process" in line.lower():
            m = _PRE.search(line)
            assert m, "%s: unparsable or commented pre-process line: %r" % (path, raw)
            cmd, data = m.group(1).lower(), m.group(2)
            if cmd == "set":
                name, _, value = data.partition("=")
                globals_[name.strip()] = value.strip()
            elif cmd == "env-set":
                name, _, ref = data.partition("=")
                assert ref.startswith("$"), "env-set data must be NAME=$ENVVAR: %r" % data
                if ref[1:] in env:
                    globals_[name] = env[ref[1:]]
            elif cmd == "include":
                pattern = data if data.startswith("/") else str(path.parent / data)
                for inc in sorted(glob.glob(pattern)):
                    out.append(fs_preprocess(Path(inc), globals_, env, depth + 1))
            else:  # pragma: no cover - not used by the overlay
                raise AssertionError("unexpected pre-process command %r" % cmd)
            continue
        out.append(line)
    return "".join(out)


def load_globals(env: dict[str, str] | None = None) -> dict[str, str]:
    globals_ = dict(STOCK_GLOBALS)
    fs_preprocess(CONF / "vars.xml", globals_, env or {})
    return globals_


def parse(rel: str, env: dict[str, str] | None = None) -> ET.Element:
    globals_ = load_globals(env)
    text = fs_preprocess(CONF / rel, globals_, env or {})
    return ET.fromstring("<document>%s</document>" % text)


def all_xml_files() -> list[str]:
    return sorted(str(p.relative_to(CONF)) for p in CONF.rglob("*.xml"))


# ----------------------------------------------------------------- every file


def test_overlay_has_the_expected_files() -> None:
    files = set(all_xml_files())
    for rel in (
        "vars.xml",
        "autoload_configs/event_socket.conf.xml",
        "autoload_configs/acl.conf.xml",
        "autoload_configs/xml_curl.conf.xml",
        "sip_profiles/pbx.xml",
        "dialplan/pbx_public.xml",
        "dialplan/pbx_internal.xml",
        "dialplan/pbx_fallback.xml",
    ):
        assert rel in files
    assert (CONF / "README.md").exists()


@pytest.mark.parametrize("rel", all_xml_files())
def test_every_file_parses_after_preprocessing(rel: str) -> None:
    parse(rel)
    # Raw files are well-formed XML too (FreeSWITCH's own parser rejects "--" inside a
    # comment, as does expat).
    ET.fromstring(_VAR.sub("x", (CONF / rel).read_text(encoding="utf-8")))


@pytest.mark.parametrize("rel", all_xml_files())
def test_preprocessor_pitfalls_are_avoided(rel: str) -> None:
    text = (CONF / rel).read_text(encoding="utf-8")
    for line in text.splitlines():
        # The preprocessor drops a whole line that holds an include tag.
        if "<include>" in line or "</include>" in line:
            assert line.strip() in ("<include>", "</include>"), line
        # Comments do not hide instructions: every mention must be a real one.
        if "x-pre-process" in line.lower():
            assert line.strip().startswith("<X-PRE-PROCESS "), line
    # Globals are expanded inside comments too: never mention the secret ones there.
    for comment in re.findall(r"<!--.*?-->", text, re.S):
        assert "$${pbx_esl_password}" not in comment
        assert "$${pbx_directory_credentials}" not in comment


def test_no_file_carries_the_stock_esl_password() -> None:
    for path in CONF.rglob("*"):
        if path.is_file():
            assert "cluecon" not in path.read_text(encoding="utf-8").lower(), path


# ----------------------------------------------------------------- vars.xml


def test_globals_have_defaults() -> None:
    g = load_globals({})
    assert g["pbx_orchestrator_socket"] == "127.0.0.1:8084"
    assert g["pbx_directory_url"] == "http://127.0.0.1:8081/freeswitch/directory"
    assert g["pbx_fallback_sounds"] == "/usr/share/freeswitch/sounds/en/us/callie"
    assert g["pbx_esl_listen_ip"] == "127.0.0.1"
    # No usable default password: unguessable, never the stock one.
    assert g["pbx_esl_password"].startswith("unset-") and STOCK_GLOBALS["core_uuid"] in g["pbx_esl_password"]
    assert g["pbx_directory_credentials"].startswith("freeswitch:unset-")


def test_globals_come_from_the_environment() -> None:
    env = {
        "PBX_ORCHESTRATOR_SOCKET": "10.0.0.5:9000",
        "PBX_ESL_PASSWORD": "s3cret-Esl",
        "PBX_DIRECTORY_URL": "http://admin:8080/freeswitch/directory",
        "PBX_DIRECTORY_CREDENTIALS": "fs:dirpass",
        "PBX_FALLBACK_SOUNDS": "/opt/sounds",
    }
    g = load_globals(env)
    assert g["pbx_orchestrator_socket"] == "10.0.0.5:9000"
    assert g["pbx_esl_password"] == "s3cret-Esl"
    assert g["pbx_directory_url"] == "http://admin:8080/freeswitch/directory"
    assert g["pbx_directory_credentials"] == "fs:dirpass"
    assert g["pbx_fallback_sounds"] == "/opt/sounds"


# ----------------------------------------------------------------- dialplan


def context(root: ET.Element, name: str) -> ET.Element:
    found = [c for c in root.iter("context") if c.get("name") == name]
    assert len(found) == 1, "context %s" % name
    return found[0]


def run_extension(ext: ET.Element, variables: dict[str, str]) -> list[tuple[str, str]] | None:
    """The actions mod_dialplan_xml queues for an extension, or None when it does not
    match. Conditions run in order; a false one queues its anti-actions and, with the
    default break="on-false", ends the extension; break="never" goes on either way;
    break="on-true" ends it after a true one."""

    def expand(text: str) -> str:
        return re.sub(r"\$\{([^}]*)\}", lambda m: variables.get(m.group(1), ""), text)

    actions: list[tuple[str, str]] = []
    matched = True
    for cond in ext.findall("condition"):
        field = cond.get("field", "")
        value = expand(field) if "${" in field else variables.get(field, "")
        ok = re.search(cond.get("expression", ""), value) is not None
        brk = cond.get("break", "on-false")
        if ok:
            actions += [(a.get("application", ""), a.get("data", "")) for a in cond.findall("action")]
            if brk in ("on-true", "always"):
                break
        else:
            actions += [(a.get("application", ""), a.get("data", "")) for a in cond.findall("anti-action")]
            if brk in ("on-false", "always"):
                matched = bool(actions)
                break
        matched = matched and (ok or brk == "never")
    return actions if matched else None


@pytest.mark.parametrize(
    "rel, ctx, entry",
    [("dialplan/pbx_public.xml", "public", "public"), ("dialplan/pbx_internal.xml", "pbx-internal", "internal")],
)
def test_entry_contexts_hand_calls_to_the_orchestrator_then_fall_back(rel: str, ctx: str, entry: str) -> None:
    root = parse(rel)
    (ext,) = context(root, ctx).findall("extension")
    actions = run_extension(ext, {"destination_number": "+4930123456"})
    assert actions == [
        ("set", "pbx_entry=%s" % entry),
        ("set", "pbx_dialed=${destination_number}"),
        ("socket", "127.0.0.1:8084 async full"),
        ("transfer", "fallback XML pbx-fallback"),
    ]
    # The raw file names the global, so the socket follows PBX_ORCHESTRATOR_SOCKET.
    raw = (CONF / rel).read_text(encoding="utf-8")
    assert 'data="$${pbx_orchestrator_socket} async full"' in raw
    moved = parse(rel, {"PBX_ORCHESTRATOR_SOCKET": "10.1.2.3:9999"})
    (ext,) = context(moved, ctx).findall("extension")
    assert ("socket", "10.1.2.3:9999 async full") in run_extension(ext, {"destination_number": "1001"})


@pytest.mark.parametrize("number", ["1001", "+4930123456", "*97", "0800_HELP", "555-0100"])
def test_entry_contexts_accept_dialled_numbers(number: str) -> None:
    (ext,) = context(parse("dialplan/pbx_public.xml"), "public").findall("extension")
    assert run_extension(ext, {"destination_number": number})


@pytest.mark.parametrize("number", ["../../etc/x", "a/b", "", "1.2"])
def test_entry_contexts_refuse_what_would_escape_the_recording_folder(number: str) -> None:
    (ext,) = context(parse("dialplan/pbx_internal.xml"), "pbx-internal").findall("extension")
    assert run_extension(ext, {"destination_number": number}) is None


def _fallback_ext() -> ET.Element:
    ctx = context(parse("dialplan/pbx_fallback.xml"), "pbx-fallback")
    (ext,) = [e for e in ctx.findall("extension") if e.get("name") == "fallback"]
    return ext


def test_fallback_bridges_the_routed_target_with_continue_on_fail_then_records() -> None:
    actions = run_extension(
        _fallback_ext(),
        {"destination_number": "fallback", "pbx_fallback_dial": "user/1001@acme.example", "pbx_dialed": "1001"},
    )
    assert actions is not None
    apps = [a for a, _ in actions]
    assert actions[:3] == [
        ("set", "continue_on_fail=true"),
        ("set", "hangup_after_bridge=true"),
        ("bridge", "${pbx_fallback_dial}"),
    ]
    assert apps[3:] == ["answer", "playback", "playback", "playback", "record", "hangup"]
    record = dict(actions)["record"]
    assert record == "/var/lib/freeswitch/recordings/pbx-fallback-${pbx_dialed}-${uuid}.wav 120 200 3"


def test_fallback_without_a_routed_target_answers_apologises_and_records() -> None:
    actions = run_extension(_fallback_ext(), {"destination_number": "fallback", "pbx_dialed": "1001"})
    assert actions is not None
    assert [a for a, _ in actions] == ["answer", "playback", "playback", "playback", "record", "hangup"]
    sounds = [d for a, d in actions if a == "playback" and not d.startswith("tone_stream:")]
    assert sounds == [
        "/usr/share/freeswitch/sounds/en/us/callie/voicemail/vm-not_available.wav",
        "/usr/share/freeswitch/sounds/en/us/callie/voicemail/vm-record_message.wav",
    ]


def test_fallback_is_only_reached_by_its_own_destination() -> None:
    assert run_extension(_fallback_ext(), {"destination_number": "1001"}) is None


# ----------------------------------------------------------------- event socket, ACL


def _params(root: ET.Element, parent: str = "settings") -> dict[str, str]:
    node = root.find(".//%s" % parent)
    assert node is not None
    return {p.get("name", ""): p.get("value", "") for p in node.findall("param")}


def test_event_socket_listens_on_loopback_behind_an_acl() -> None:
    es = _params(parse("autoload_configs/event_socket.conf.xml"))
    assert es["listen-ip"] == "127.0.0.1"
    assert es["listen-port"] == "8021"
    acl_name = es["apply-inbound-acl"]
    if acl_name != "loopback.auto":
        acl = parse("autoload_configs/acl.conf.xml")
        (lst,) = [x for x in acl.iter("list") if x.get("name") == acl_name]
        assert lst.get("default") == "deny"
        cidrs = {n.get("cidr") for n in lst.findall("node") if n.get("type") == "allow"}
        assert cidrs <= {"127.0.0.0/8", "127.0.0.1/32"}


def test_event_socket_password_is_never_cluecon() -> None:
    assert _params(parse("autoload_configs/event_socket.conf.xml"))["password"].lower() != "cluecon"
    es = _params(parse("autoload_configs/event_socket.conf.xml", {"PBX_ESL_PASSWORD": "Zq8-long-secret"}))
    assert es["password"] == "Zq8-long-secret"


# ----------------------------------------------------------------- directory, SIP profile


def test_xml_curl_binds_the_directory_to_the_admin_app_with_basic_auth() -> None:
    root = parse("autoload_configs/xml_curl.conf.xml", {"PBX_DIRECTORY_CREDENTIALS": "fs:pw"})
    (binding,) = root.iter("binding")
    params = {p.get("name"): p for p in binding.findall("param")}
    url = params["gateway-url"]
    assert url.get("value") == "http://127.0.0.1:8081/freeswitch/directory"
    assert url.get("bindings") == "directory"
    assert params["gateway-credentials"].get("value") == "fs:pw"
    assert params["auth-scheme"].get("value") == "basic"


def test_sip_profile_authenticates_phones_and_routes_carriers_to_public() -> None:
    root = parse("sip_profiles/pbx.xml")
    (profile,) = root.iter("profile")
    params = _params(profile)
    assert params["auth-calls"] == "true"
    assert params["context"] == "public"
    assert params["challenge-realm"] == "auto_from"
    assert "force-register-domain" not in params
    assert params["sip-port"] == "5060"
    acl = parse("autoload_configs/acl.conf.xml")
    assert params["apply-inbound-acl"] in {x.get("name") for x in acl.iter("list")}


def test_sip_profile_includes_the_gateway_folder() -> None:
    text = (CONF / "sip_profiles/pbx.xml").read_text(encoding="utf-8")
    assert '<X-PRE-PROCESS cmd="include" data="pbx/*.xml"/>' in text
    assert os.path.isdir(CONF / "sip_profiles/pbx")


def test_globals_for_the_install_command_have_defaults_and_follow_the_environment() -> None:
    g = load_globals({})
    assert g["pbx_esl_port"] == "8021"
    assert g["pbx_sip_ip"] == STOCK_GLOBALS["local_ip_v4"]
    g = load_globals({"PBX_ESL_PORT": "8931", "PBX_SIP_IP": "127.0.0.1"})
    assert g["pbx_esl_port"] == "8931" and g["pbx_sip_ip"] == "127.0.0.1"
    es = _params(parse("autoload_configs/event_socket.conf.xml", {"PBX_ESL_PORT": "8931"}))
    assert es["listen-port"] == "8931"
    profile = _params(next(parse("sip_profiles/pbx.xml", {"PBX_SIP_IP": "127.0.0.1"}).iter("profile")))
    assert profile["sip-ip"] == profile["rtp-ip"] == "127.0.0.1"


# ----------------------------------------------------------------- pbx-fs-install

STOCK_CONF = Path(os.environ.get("FS_PREFIX", "/opt/freeswitch")) / "etc" / "freeswitch"
STOCK_OFF = ("sip_profiles/internal.xml", "sip_profiles/external.xml", "sip_profiles/internal-ipv6.xml",
             "sip_profiles/external-ipv6.xml", "dialplan/public.xml", "dialplan/default.xml", "directory/default")


def stock_conf(dest: Path) -> Path:
    """A copy of the real stock configuration when there is one, else a small tree
    with the same names and the lines the install command edits."""
    import shutil

    if (STOCK_CONF / "vars.xml").is_file():
        shutil.copytree(STOCK_CONF, dest, symlinks=True)
        return dest
    files = {
        "vars.xml": '<include>\n  <X-PRE-PROCESS cmd="set" data="domain=127.0.0.1"/>\n</include>\n',
        "autoload_configs/modules.conf.xml": '<configuration name="modules.conf">\n  <modules>\n'
                                             '    <!-- <load module="mod_xml_curl"/> -->\n'
                                             '    <load module="mod_event_socket"/>\n    <load module="mod_sofia"/>\n'
                                             '  </modules>\n</configuration>\n',
        "autoload_configs/event_socket.conf.xml": '<configuration name="event_socket.conf"><settings>'
                                                  '<param name="password" value="ClueCon"/></settings></configuration>\n',
        "dialplan/default.xml": "<include/>\n",
        "dialplan/public.xml": "<include/>\n",
        "directory/default.xml": "<include/>\n",
        "directory/default/1000.xml": "<include/>\n",
    }
    for rel in STOCK_OFF[:4]:
        files[rel] = "<include/>\n"
    for rel, text in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text, encoding="utf-8")
    return dest


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    out: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = (path.stat().st_mode & 0o777, path.read_bytes() if path.is_file() else None)
    return out


INSTALL_ARGS = ["--esl-port", "8931", "--esl-password", "Zq8-long-secret", "--orchestrator", "127.0.0.1:9084",
                "--directory-url", "http://127.0.0.1:8081/freeswitch/directory", "--directory-credentials", "fs:pw",
                "--sip-port", "5990", "--carrier", "198.51.100.10"]


def installed_globals(conf: Path) -> dict[str, str]:
    globals_ = dict(STOCK_GLOBALS)
    fs_preprocess(conf / "pbx_vars.xml", globals_, {})
    return globals_


def test_install_command_installs_the_overlay_and_switches_off_the_stock_profiles(tmp_path: Path, capsys) -> None:
    from orchestrator.fs_install import main

    conf = stock_conf(tmp_path / "conf")
    assert main(["--conf", str(conf)] + INSTALL_ARGS) == 0
    for rel in STOCK_OFF:
        assert not (conf / rel).exists() and (conf / (rel + ".off")).exists(), rel
    assert sorted(p.name for p in (conf / "sip_profiles").glob("*.xml")) == ["pbx.xml"]  # ipv6 ones too
    assert (conf / "dialplan/pbx_public.xml").read_text() == (CONF / "dialplan/pbx_public.xml").read_text()
    vars_text = (conf / "vars.xml").read_text()
    assert vars_text.rstrip().endswith('<X-PRE-PROCESS cmd="include" data="pbx_vars.xml"/>\n</include>')
    modules = (conf / "autoload_configs/modules.conf.xml").read_text()
    assert modules.index('    <load module="mod_xml_curl"/>') < modules.index('<load module="mod_sofia"/>')
    # The values given end up as the globals the overlay's files use.
    g = installed_globals(conf)
    assert (g["pbx_esl_port"], g["pbx_esl_password"], g["pbx_orchestrator_socket"], g["pbx_sip_port"]) == \
        ("8931", "Zq8-long-secret", "127.0.0.1:9084", "5990")
    assert g["pbx_directory_url"] == "http://127.0.0.1:8081/freeswitch/directory"
    text = fs_preprocess(conf / "autoload_configs/event_socket.conf.xml", g, {})
    es = _params(ET.fromstring("<document>%s</document>" % text))
    assert (es["listen-port"], es["password"]) == ("8931", "Zq8-long-secret")
    acl = ET.fromstring("<document>%s</document>" % fs_preprocess(conf / "autoload_configs/acl.conf.xml", g, {}))
    (carriers,) = [x for x in acl.iter("list") if x.get("name") == "pbx_carriers"]
    assert [n.get("cidr") for n in carriers.findall("node")] == ["198.51.100.10/32"]
    # Secrets are not world-readable.
    for rel in ("pbx_vars.xml", "autoload_configs/event_socket.conf.xml", "autoload_configs/xml_curl.conf.xml"):
        assert (conf / rel).stat().st_mode & 0o007 == 0, rel


def test_install_command_twice_gives_the_same_tree(tmp_path: Path, capsys) -> None:
    from orchestrator.fs_install import main

    conf = stock_conf(tmp_path / "conf")
    assert main(["--conf", str(conf)] + INSTALL_ARGS) == 0
    first = snapshot(conf)
    capsys.readouterr()
    assert main(["--conf", str(conf)] + INSTALL_ARGS) == 0
    assert snapshot(conf) == first
    assert "nothing to change" in capsys.readouterr().out


def test_install_command_dry_run_changes_nothing_and_says_what_it_would_do(tmp_path: Path, capsys) -> None:
    from orchestrator.fs_install import main

    conf = stock_conf(tmp_path / "conf")
    before = snapshot(conf)
    assert main(["--conf", str(conf), "--dry-run"] + INSTALL_ARGS) == 0
    assert snapshot(conf) == before
    out = capsys.readouterr().out
    assert "would rename sip_profiles/internal-ipv6.xml -> sip_profiles/internal-ipv6.xml.off" in out
    assert "would write  pbx_vars.xml" in out and "did " not in out


def test_install_command_keeps_an_operators_gateway_and_reenables_nothing(tmp_path: Path) -> None:
    from orchestrator.fs_install import main

    conf = stock_conf(tmp_path / "conf")
    assert main(["--conf", str(conf)]) == 0
    gateway = conf / "sip_profiles/pbx/pstn.xml"
    gateway.write_text("<include><gateway name=\"pstn\"/></include>\n")
    # A package upgrade brings a stock profile back: the next install switches it off again.
    (conf / "sip_profiles/internal-ipv6.xml").write_text("<include/>\n")
    assert main(["--conf", str(conf)]) == 0
    assert gateway.read_text() == "<include><gateway name=\"pstn\"/></include>\n"
    assert not (conf / "sip_profiles/internal-ipv6.xml").exists()
    assert (conf / "sip_profiles/internal-ipv6.xml.off").read_text() == "<include/>\n"


def test_install_command_finds_a_source_builds_conf_under_its_prefix(tmp_path: Path) -> None:
    from orchestrator.fs_install import main

    conf = stock_conf(tmp_path / "prefix" / "etc" / "freeswitch")
    assert main(["--prefix", str(tmp_path / "prefix"), "--esl-password", "Zq8-long-secret"]) == 0
    assert installed_globals(conf)["pbx_esl_password"] == "Zq8-long-secret"


@pytest.mark.parametrize("args, message", [
    (["--esl-password", "ClueCon"], "stock ESL password is refused"),
    (["--esl-port", "80211"], "port number 1-65535"),
    (["--esl-password", 'a"b'], "without blanks, quotes"),
    (["--orchestrator", "127.0.0.1"], "HOST:PORT"),
    (["--directory-url", "ftp://x/"], "http(s) URL"),
    (["--carrier", "not-a-net"], "give a network"),
])
def test_install_command_refuses_bad_values_saying_what_to_give(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    from orchestrator.fs_install import main

    conf = stock_conf(tmp_path / "conf")
    before = snapshot(conf)
    assert main(["--conf", str(conf)] + args) == 2
    assert message in capsys.readouterr().err
    assert snapshot(conf) == before


def test_install_command_refuses_a_folder_that_is_no_freeswitch_conf(tmp_path: Path, capsys) -> None:
    from orchestrator.fs_install import main

    assert main(["--conf", str(tmp_path)]) == 2
    assert "vars.xml not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.realfs
def test_installed_configuration_loads_in_the_real_freeswitch(tmp_path: Path) -> None:
    from tests.realfs.fs_harness import PrivateFreeSwitch, find_prefix

    prefix, why = find_prefix()
    if prefix is None:
        pytest.skip(why)
    fs = PrivateFreeSwitch(prefix, tmp_path)
    fs.install("127.0.0.1:9084", "http://127.0.0.1:9/freeswitch/directory", "fs:pw", ["127.0.0.2/32"])
    try:
        esl = fs.start()  # authenticates on our port with our password: else it fails here
        try:
            status = esl.api("sofia status")
            assert re.findall(r"^\s*(\S+)\s+profile\s+sip:", status, re.M) == ["pbx"]  # no internal/external/ipv6
            assert esl.api("module_exists mod_xml_curl").strip() == "true"
            assert esl.api("global_getvar pbx_orchestrator_socket").strip() == "127.0.0.1:9084"
            assert esl.api("xml_locate dialplan context name pbx-fallback").count('name="pbx-fallback"') == 1
        finally:
            esl.close()
    finally:
        fs.stop()
