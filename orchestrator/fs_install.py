"""``pbx-fs-install``: install the ``freeswitch-conf/`` overlay into a FreeSWITCH 1.10
configuration directory, idempotently, with a dry run.

    pbx-fs-install --conf /etc/freeswitch                       # Debian packages
    pbx-fs-install --prefix /usr/local/freeswitch               # a source build: PREFIX/etc/freeswitch
    scripts/install-freeswitch-conf --conf DIR --dry-run        # same, without the venv

Three layers: :func:`read_state` reads the configuration directory and the overlay
(I/O, read only), :func:`plan` turns that state and the options into a list of
:class:`Step` (pure: no I/O), :func:`apply` carries the steps out. A dry run prints the
plan and stops. Running the command twice gives the same tree: the second plan is empty.

Standard library only, so that ``scripts/install-freeswitch-conf`` runs on a FreeSWITCH
host with the system Python and no virtual environment.

FreeSWITCH behaviour relied on (1.10.12, src/switch_xml.c and the stock conf/vanilla):
* ``freeswitch.xml`` includes ``autoload_configs/*.xml``, ``dialplan/*.xml``,
  ``directory/*.xml``; ``sofia.conf.xml`` includes ``../sip_profiles/*.xml``. A file
  renamed to ``*.xml.off`` is therefore no longer read: that is how the stock profiles
  (internal, external, internal-ipv6, external-ipv6: the ipv6 ones bind [::]:5060/5080
  too), the stock dialplans and the stock directory users are switched off.
* The preprocessor expands ``$${name}`` in a whole line and runs one ``X-PRE-PROCESS``
  per line, comments included; values we write into ``set`` lines therefore may not hold
  ``$``, quotes, ``<``, ``>`` or ``&`` (checked in :func:`validate`).
* ``env-set`` lines after our ``set`` lines still let the service's environment
  (``PBX_*``) override what this command wrote.
* mod_xml_curl is not in the stock ``modules.conf.xml`` (only as a comment) and must be
  loaded before mod_sofia, which looks users up when it starts.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

OVERLAY = Path(__file__).resolve().parent.parent / "freeswitch-conf"

# Stock files switched off by renaming them to NAME.off (relative to the conf dir).
STOCK_OFF = (
    "sip_profiles/internal.xml",
    "sip_profiles/external.xml",
    "sip_profiles/internal-ipv6.xml",
    "sip_profiles/external-ipv6.xml",
    "dialplan/public.xml",
    "dialplan/default.xml",
    "directory/default",
)
# Overlay files and where they go; the gateway examples are installed only when missing
# (an operator's carrier data is never overwritten).
SECRET_MODE = 0o640
PUBLIC_MODE = 0o644
INCLUDE_LINE = '  <X-PRE-PROCESS cmd="include" data="pbx_vars.xml"/>\n'
XML_CURL_LINE = '    <load module="mod_xml_curl"/>\n'
_UNSAFE = re.compile(r'[$"<>&\s\x00-\x1f]')


class InstallError(Exception):
    """What was wrong and what to do (printed without a traceback)."""


@dataclass(frozen=True)
class Options:
    conf: Path
    overlay: Path = OVERLAY
    dry_run: bool = False
    # Values written as the defaults of pbx_vars.xml (None: keep the overlay's default).
    values: dict[str, str] = field(default_factory=dict)
    carriers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    kind: str  # "write" | "rename" | "remove"
    path: str  # relative to the conf dir
    content: str = ""
    mode: int = PUBLIC_MODE
    target: str = ""  # rename target
    why: str = ""

    def describe(self) -> str:
        if self.kind == "write":
            return "write  %s (mode %o): %s" % (self.path, self.mode, self.why)
        if self.kind == "rename":
            return "rename %s -> %s: %s" % (self.path, self.target, self.why)
        return "remove %s: %s" % (self.path, self.why)


@dataclass(frozen=True)
class State:
    """What :func:`plan` needs to know: the overlay's files and the conf dir's."""

    overlay: dict[str, str]  # overlay-relative path -> text
    files: dict[str, str]  # conf-relative path -> text, for the files we may touch
    exists: frozenset[str]  # conf-relative paths that exist (files and folders)


# ----------------------------------------------------------------- validation


def _checked(name: str, value: str) -> str:
    if not value or _UNSAFE.search(value):
        raise InstallError("%s %r: must be non-empty, without blanks, quotes, '$', '<', '>' or '&' "
                           "(FreeSWITCH's preprocessor would change it)" % (name, value))
    return value


def _port(name: str, value: str) -> str:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise InstallError("%s %r: give a port number 1-65535" % (name, value))
    return str(int(value))


def _hostport(name: str, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise InstallError("%s %r: give HOST:PORT, e.g. 127.0.0.1:8084" % (name, value))
    _checked(name, host)
    return "%s:%s" % (host, _port(name, port))


def _ip(name: str, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InstallError("%s %r: give an IP address, e.g. 127.0.0.1" % (name, value)) from None


def _cidr(name: str, value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise InstallError("%s %r: give a network, e.g. 198.51.100.10/32" % (name, value)) from None


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InstallError("%s %r: give an http(s) URL, e.g. http://127.0.0.1:8081/freeswitch/directory" % (name, value))
    return _checked(name, value)


def _credentials(name: str, value: str) -> str:
    if ":" not in value:
        raise InstallError("%s: give USER:PASSWORD (the admin app's PBX_DIRECTORY_USER and PBX_DIRECTORY_PASSWORD)" % name)
    return _checked(name, value)


def _password(name: str, value: str) -> str:
    if value.lower() == "cluecon":
        raise InstallError("%s: the stock ESL password is refused; choose a long random one" % name)
    return _checked(name, value)


# option name -> (global in pbx_vars.xml, validator)
VALUE_OPTIONS = {
    "esl_port": ("pbx_esl_port", _port),
    "esl_password": ("pbx_esl_password", _password),
    "esl_listen_ip": ("pbx_esl_listen_ip", _ip),
    "orchestrator": ("pbx_orchestrator_socket", _hostport),
    "directory_url": ("pbx_directory_url", _url),
    "directory_credentials": ("pbx_directory_credentials", _credentials),
    "sip_ip": ("pbx_sip_ip", _ip),
    "sip_port": ("pbx_sip_port", _port),
    "fallback_sounds": ("pbx_fallback_sounds", _checked),
}


# ----------------------------------------------------------------- pure text edits


def set_global(vars_text: str, name: str, value: str) -> str:
    """Replace the ``set`` line of global ``name`` by ``name=value``."""
    pattern = re.compile(r'(<X-PRE-PROCESS cmd="set" data="%s=)[^"]*("/>)' % re.escape(name))
    if not pattern.search(vars_text):
        raise InstallError("the overlay's vars.xml has no set line for %s: is --overlay the right folder?" % name)
    return pattern.sub(lambda m: m.group(1) + value + m.group(2), vars_text, count=1)


def add_carriers(acl_text: str, cidrs: Sequence[str]) -> str:
    """Add allow nodes to the ``pbx_carriers`` list."""
    if not cidrs:
        return acl_text
    nodes = "".join('      <node type="allow" cidr="%s"/>\n' % c for c in cidrs)
    marker = '<list name="pbx_carriers" default="deny">\n'
    if marker not in acl_text:
        raise InstallError("the overlay's acl.conf.xml has no pbx_carriers list")
    return acl_text.replace(marker, marker + nodes, 1)


def _strip_comments(text: str) -> str:
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def with_vars_include(vars_text: str) -> str:
    """The stock vars.xml with our include as the last line before ``</include>``."""
    if 'data="pbx_vars.xml"' in _strip_comments(vars_text):
        return vars_text
    end = vars_text.rfind("</include>")
    if end < 0:
        raise InstallError("vars.xml has no closing </include>: is --conf a FreeSWITCH configuration directory?")
    return vars_text[:end] + INCLUDE_LINE + vars_text[end:]


def with_xml_curl(modules_text: str) -> str:
    """modules.conf.xml with mod_xml_curl loaded before mod_sofia."""
    if re.search(r'<load\s+module="mod_xml_curl"\s*/>', _strip_comments(modules_text)):
        return modules_text
    m = re.search(r'^[ \t]*<load\s+module="mod_sofia"\s*/>', modules_text, re.M)
    if m is None:
        raise InstallError("modules.conf.xml does not load mod_sofia: load it, then run this again")
    return modules_text[: m.start()] + XML_CURL_LINE + modules_text[m.start():]


# ----------------------------------------------------------------- the plan

SECRET_FILES = {"vars.xml", "autoload_configs/event_socket.conf.xml", "autoload_configs/xml_curl.conf.xml"}


def overlay_targets(overlay_files: Sequence[str]) -> list[tuple[str, str, int, bool]]:
    """(overlay path, conf path, mode, overwrite) for every overlay file."""
    out: list[tuple[str, str, int, bool]] = []
    for rel in sorted(overlay_files):
        mode = SECRET_MODE if rel in SECRET_FILES else PUBLIC_MODE
        if rel == "vars.xml":
            out.append((rel, "pbx_vars.xml", mode, True))
        elif rel.startswith("sip_profiles/pbx/"):
            out.append((rel, rel, SECRET_MODE, False))  # carrier credentials live there
        else:
            out.append((rel, rel, mode, True))
    return out


def plan(state: State, opts: Options) -> list[Step]:
    """Steps that bring the conf dir to the installed state (empty when it is there)."""
    steps: list[Step] = []
    for name in ("vars.xml", "autoload_configs/modules.conf.xml"):
        if name not in state.files:
            raise InstallError("%s not found in %s: give the FreeSWITCH configuration directory "
                               "(/etc/freeswitch for Debian packages, PREFIX/etc/freeswitch for a source build)"
                               % (name, opts.conf))
    for src, dst, mode, overwrite in overlay_targets(list(state.overlay)):
        text = state.overlay[src]
        if src == "vars.xml":
            for key, value in opts.values.items():
                text = set_global(text, VALUE_OPTIONS[key][0], value)
        if src == "autoload_configs/acl.conf.xml":
            text = add_carriers(text, opts.carriers)
        if dst in state.exists and not overwrite:
            continue
        if state.files.get(dst) != text:
            steps.append(Step("write", dst, text, mode, why="overlay file %s" % src))
    vars_text = with_vars_include(state.files["vars.xml"])
    if vars_text != state.files["vars.xml"]:
        steps.append(Step("write", "vars.xml", vars_text, PUBLIC_MODE, why="include pbx_vars.xml at its end"))
    modules = state.files["autoload_configs/modules.conf.xml"]
    if with_xml_curl(modules) != modules:
        steps.append(Step("write", "autoload_configs/modules.conf.xml", with_xml_curl(modules), PUBLIC_MODE,
                          why="load mod_xml_curl before mod_sofia"))
    for rel in STOCK_OFF:
        if rel in state.exists:
            off = rel + ".off"
            if off in state.exists:
                steps.append(Step("remove", off, why="an older copy; %s replaces it" % rel))
            steps.append(Step("rename", rel, target=off, why="stock configuration switched off"))
    return steps


# ----------------------------------------------------------------- I/O


def read_state(conf: Path, overlay: Path) -> State:
    if not conf.is_dir():
        raise InstallError("%s is not a directory: give the FreeSWITCH configuration directory "
                           "(/etc/freeswitch, or PREFIX/etc/freeswitch for a source build)" % conf)
    if not (overlay / "vars.xml").is_file():
        raise InstallError("%s holds no overlay (vars.xml missing): give --overlay freeswitch-conf" % overlay)
    skip = ("dialplan/", "autoload_configs/", "sip_profiles/", "vars.xml")
    over: dict[str, str] = {}
    for path in sorted(overlay.rglob("*.xml")):
        rel = path.relative_to(overlay).as_posix()
        if rel.startswith(skip):
            over[rel] = path.read_text(encoding="utf-8")
    wanted = {dst for _, dst, _, _ in overlay_targets(list(over))} | {"vars.xml", "autoload_configs/modules.conf.xml"}
    files = {rel: (conf / rel).read_text(encoding="utf-8") for rel in wanted if (conf / rel).is_file()}
    exists = {rel for rel in wanted if (conf / rel).exists()}
    for rel in STOCK_OFF:
        for name in (rel, rel + ".off"):
            if (conf / name).exists():
                exists.add(name)
    return State(overlay=over, files=files, exists=frozenset(exists))


def _same_group(path: Path, conf: Path) -> None:
    """As root, give a new file the group of the stock vars.xml (Debian: freeswitch), so
    that FreeSWITCH can read our 0640 files."""
    if os.geteuid() == 0:
        os.chown(path, -1, (conf / "vars.xml").stat().st_gid)


def apply(steps: Sequence[Step], conf: Path) -> None:
    import shutil

    for step in steps:
        path = conf / step.path
        if step.kind == "write":
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".pbx-tmp")
            tmp.write_text(step.content, encoding="utf-8")
            os.chmod(tmp, step.mode)
            _same_group(tmp, conf)
            os.replace(tmp, path)
        elif step.kind == "rename":
            os.replace(path, conf / step.target)
        elif step.kind == "remove":
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def conf_from_prefix(prefix: Path) -> Path:
    for candidate in (prefix / "etc" / "freeswitch", prefix / "conf"):
        if (candidate / "vars.xml").is_file():
            return candidate
    raise InstallError("no FreeSWITCH configuration under %s (looked for etc/freeswitch/vars.xml and conf/vars.xml); "
                       "give --conf DIR" % prefix)


def fallback_sounds_warning(values: dict[str, str], prefix: Path | None) -> str | None:
    """The fallback plays vm-not_available and vm-record_message: say when they are missing."""
    if "fallback_sounds" in values:
        folder = Path(values["fallback_sounds"])
    elif prefix is not None:
        folder = prefix / "share" / "freeswitch" / "sounds" / "en" / "us" / "callie"
    else:
        return None
    missing = []
    for name in ("vm-not_available.wav", "vm-record_message.wav"):
        if not any((folder / "voicemail" / sub / name).is_file() for sub in ("", "8000", "16000")):
            missing.append(name)
    if not missing:
        return None
    return ("warning: %s not found under %s/voicemail: the fallback (orchestrator unreachable) will skip them; "
            "install the stock sound packages or give --fallback-sounds DIR" % (", ".join(missing), folder))


def parse_args(argv: Sequence[str] | None) -> tuple[Options, Path | None]:
    p = argparse.ArgumentParser(prog="pbx-fs-install", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--conf", type=Path, help="FreeSWITCH configuration directory (Debian: /etc/freeswitch)")
    where.add_argument("--prefix", type=Path, help="install prefix of a source build (uses PREFIX/etc/freeswitch)")
    p.add_argument("--overlay", type=Path, default=OVERLAY, help="the overlay folder (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    p.add_argument("--esl-port", help="event socket port (default 8021)")
    p.add_argument("--esl-password", help="event socket password (default: PBX_ESL_PASSWORD of the service)")
    p.add_argument("--esl-listen-ip", help="event socket address (default 127.0.0.1)")
    p.add_argument("--orchestrator", help="HOST:PORT of pbx-orchestrator's outbound socket server (default 127.0.0.1:8084)")
    p.add_argument("--directory-url", help="the admin app's directory URL")
    p.add_argument("--directory-credentials", help="USER:PASSWORD for the directory")
    p.add_argument("--sip-ip", help="address of the pbx SIP profile (default: the host's IPv4 address)")
    p.add_argument("--sip-port", help="port of the pbx SIP profile (default 5060)")
    p.add_argument("--fallback-sounds", help="folder with voicemail/vm-not_available.wav and vm-record_message.wav")
    p.add_argument("--carrier", action="append", default=[], metavar="CIDR",
                   help="a carrier's signalling address for the pbx_carriers ACL (repeatable)")
    args = p.parse_args(argv)
    conf = args.conf if args.conf is not None else conf_from_prefix(args.prefix)
    values: dict[str, str] = {}
    for key, (_, check) in VALUE_OPTIONS.items():
        raw = getattr(args, key)
        if raw is not None:
            values[key] = check("--" + key.replace("_", "-"), raw)
    carriers = tuple(_cidr("--carrier", c) for c in args.carrier)
    return Options(conf=conf, overlay=args.overlay, dry_run=args.dry_run, values=values, carriers=carriers), args.prefix


def main(argv: Sequence[str] | None = None) -> int:
    try:
        opts, prefix = parse_args(argv)
        steps = plan(read_state(opts.conf, opts.overlay), opts)
        warning = fallback_sounds_warning(opts.values, prefix)
        if not opts.dry_run:
            apply(steps, opts.conf)
    except InstallError as exc:
        print("pbx-fs-install: %s" % exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print("pbx-fs-install: %s: %s (run it as a user who may write there, e.g. root)"
              % (exc.filename or "", exc.strerror), file=sys.stderr)
        return 1
    verb = "would" if opts.dry_run else "did"
    for step in steps:
        print("%s %s" % (verb, step.describe()))
    if warning:
        print(warning, file=sys.stderr)
    if not steps:
        print("%s: the overlay is installed; nothing to change" % opts.conf)
    elif not opts.dry_run:
        print("%s: %d change(s); now restart FreeSWITCH (or fs_cli -p PASSWORD -x reloadxml, then reload "
              "mod_sofia and mod_event_socket)" % (opts.conf, len(steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
