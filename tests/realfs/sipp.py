"""sipp phones and carriers for the real-FreeSWITCH tier.

A phone is two sipp processes: one REGISTERs (digest auth with the employee's exported
SIP password) with a Contact naming the other, a UAS that answers INVITEs with its
behaviour (answer after N ms, or ring until CANCELed). sipp maps incoming requests to
calls by Call-ID, so one process cannot both register (a client scenario) and take
INVITEs with new Call-IDs; hence two. A carrier is a sipp UAC on its own loopback
address (127.0.0.2, allowed by the pbx_carriers ACL, so FreeSWITCH does not challenge
it and runs the call in context ``public``).

sipp behaviour relied on (3.6.1): ``[authentication username=.. password=..]`` answers
the 401 of the previous message; ``[last_Via:]`` etc. copy headers of the last received
message; ``[last_cseq_number]`` is its CSeq number; ``-aa`` answers INFO / NOTIFY /
OPTIONS / UPDATE outside the scenario with 200; ``-m N`` ends after N calls, exit status
0 when all succeeded.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

SDP = """v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
"""


def register_scenario(user: str, domain: str, password: str, contact_port: int, expires: int = 3600,
                      contact_user: str = "") -> str:
    """REGISTER ``user@domain``; ``contact_user`` (default ``user``): the Contact's user
    part, distinct when one sipp UAS registers in two domains (sofia's
    multiple-registrations=contact keeps one registration per Contact)."""
    def request(cseq: int, auth: str) -> str:
        return """REGISTER sip:{domain} SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{domain}>;tag=reg[call_number]
To: <sip:{user}@{domain}>
Call-ID: [call_id]
CSeq: {cseq} REGISTER
Contact: <sip:{contact}@127.0.0.1:{port}>
{auth}Max-Forwards: 70
Expires: {expires}
Content-Length: 0

""".format(domain=domain, user=user, cseq=cseq, port=contact_port, auth=auth, expires=expires,
           contact=contact_user or user)

    auth = "[authentication username=%s password=%s]\n" % (user, password)
    return """<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="register">
<send retrans="500"><![CDATA[
{first}]]></send>
<recv response="401" auth="true"/>
<send retrans="500"><![CDATA[
{second}]]></send>
<recv response="200"/>
</scenario>
""".format(first=request(1, ""), second=request(2, auth))


_RINGING = """SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

"""


def uas_scenario(answer_after_ms: int | None, busy: bool = False) -> str:
    """A phone: rings; answers after ``answer_after_ms`` and waits for BYE, or (None)
    rings until the caller cancels; ``busy``: answers every INVITE with 486 Busy Here."""
    if busy:
        body = """<send><![CDATA[
SIP/2.0 486 Busy Here
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
<recv request="ACK"/>
"""
    elif answer_after_ms is None:
        body = """<send><![CDATA[
{ringing}]]></send>
<recv request="CANCEL"/>
<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
<send><![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
CSeq: [last_cseq_number] INVITE
Content-Length: 0

]]></send>
<recv request="ACK"/>
""".format(ringing=_RINGING)
    else:
        body = """<send><![CDATA[
{ringing}]]></send>
<pause milliseconds="{ms}"/>
<send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

{sdp}]]></send>
<recv request="ACK"/>
<recv request="BYE"/>
<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
""".format(ringing=_RINGING, ms=answer_after_ms, sdp=SDP)
    return """<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="phone">
<recv request="INVITE"/>
{body}</scenario>
""".format(body=body)


def member_scenario(answer_after_ms: int, talk_ms: int) -> str:
    """A department member's phone: rings; if not cancelled within ``answer_after_ms``
    answers, talks ``talk_ms`` and hangs up itself (BYE), unless FreeSWITCH hangs up
    first. sipp: ``<recv ... timeout ontimeout>`` jumps to a label when nothing came;
    ``rrs`` keeps the INVITE's Contact/Record-Route for ``[next_url]``; the BYE's From is
    our To (with our tag), its To the INVITE's From, captured with ``ereg``."""
    return """<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="member">
<recv request="INVITE" rrs="true">
  <action>
    <ereg regexp="&lt;.*" search_in="hdr" header="From:" assign_to="remote_from"/>
    <ereg regexp="&lt;[^&gt;]*&gt;" search_in="hdr" header="To:" assign_to="local_to"/>
  </action>
</recv>
<send><![CDATA[
{ringing}]]></send>
<recv request="CANCEL" timeout="{answer}" ontimeout="answer"/>
<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
<send><![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
CSeq: [last_cseq_number] INVITE
Content-Length: 0

]]></send>
<recv request="ACK" next="end"/>
<label id="answer"/>
<send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

{sdp}]]></send>
<recv request="ACK"/>
<recv request="BYE" timeout="{talk}" ontimeout="hangup"/>
<send next="end"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
<label id="hangup"/>
<send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: [$local_to];tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
Call-ID: [call_id]
CSeq: 2 BYE
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv response="200"/>
<label id="end"/>
</scenario>
""".format(ringing=_RINGING, answer=answer_after_ms, talk=talk_ms, sdp=SDP)


def write_tone(path: Path, seconds: float = 10.0, hz: float = 440.0) -> Path:
    """Raw 8 kHz G.711 mu-law audio of a sine tone, what sipp's rtp_stream plays with
    payload type 0 (PCMU)."""
    import math

    def ulaw(sample: int) -> int:  # ITU-T G.711, from a 16-bit linear sample
        sign = 0x80 if sample < 0 else 0
        magnitude = min(abs(sample), 32635) + 0x84
        exponent = max(0, magnitude.bit_length() - 8)
        mantissa = (magnitude >> (exponent + 3)) & 0x0F
        return ~(sign | (exponent << 4) | mantissa) & 0xFF

    frames = int(8000 * seconds)
    path.write_bytes(bytes(ulaw(int(8000 * math.sin(2 * math.pi * hz * n / 8000))) for n in range(frames)))
    return path


def carrier_scenario(number: str, caller: str, fs_port: int, hold_ms: int | None, dtmf: str = "",
                     dtmf_after_ms: int = 0, audio: Path | None = None) -> str:
    """A carrier's call: INVITE ``number``; when answered, optionally send DTMF as SIP
    INFO (application/dtmf-relay), then hold ``hold_ms`` and hang up, or (None) wait
    for FreeSWITCH to hang up."""
    hangup = _BYE_FROM_FS if hold_ms is None else _BYE_FROM_US.format(number=number, caller=caller, port=fs_port,
                                                                       hold=hold_ms)
    infos = ""
    if dtmf:
        infos = '<pause milliseconds="%d"/>\n' % dtmf_after_ms
        for n, digit in enumerate(dtmf):
            infos += """<send><![CDATA[
INFO sip:{number}@127.0.0.1:{port} SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: {cseq} INFO
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal={digit}
Duration=160
]]></send>
<recv response="200"/>
<pause milliseconds="300"/>
""".format(number=number, port=fs_port, caller=caller, cseq=10 + n, digit=digit)
    if audio is not None:  # after the ACK: RTP from the caller (sipp rtp_stream, PCMU)
        infos = '<nop><action><exec rtp_stream="%s,-1,0"/></action></nop>\n' % audio + infos
    return """<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="carrier">
<send retrans="500"><![CDATA[
INVITE sip:{number}@127.0.0.1:{port} SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:{number}@127.0.0.1:{port}>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{sdp}]]></send>
<recv response="100" optional="true"/>
<recv response="180" optional="true"/>
<recv response="183" optional="true"/>
<recv response="180" optional="true"/>
<recv response="200" rrs="true"/>
<send><![CDATA[
ACK sip:{number}@127.0.0.1:{port} SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
{infos}{hangup}</scenario>
""".format(number=number, caller=caller, port=fs_port, sdp=SDP, infos=infos, hangup=hangup)


_BYE_FROM_US = """<pause milliseconds="{hold}"/>
<send retrans="500"><![CDATA[
BYE sip:{number}@127.0.0.1:{port} SIP/2.0
Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 30 BYE
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv response="200"/>
"""
_BYE_FROM_FS = """<recv request="BYE"/>
<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"""


class Sipp:
    """One sipp process running a generated scenario."""

    def __init__(self, workdir: Path, name: str, scenario: str, remote: str, local_ip: str, local_port: int,
                 calls: int | None = 1, timeout_s: int = 120) -> None:
        self.path = workdir / ("%s.xml" % name)
        self.path.write_text(scenario, encoding="iso-8859-1")
        self.log = workdir / ("%s.log" % name)
        cmd = ["sipp", remote, "-sf", str(self.path), "-i", local_ip, "-p", str(local_port), "-nostdin", "-aa",
               "-timeout", "%ds" % timeout_s, "-timeout_error", "-trace_err", "-error_file", str(workdir / ("%s.err" % name))]
        if calls is not None:
            cmd += ["-m", str(calls)]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=workdir)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)

    def errors(self) -> str:
        err = self.log.with_suffix(".err")
        return err.read_text(errors="replace") if err.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
