"""Channel variables a sofia / loopback channel carries, as recorded.

The variable lists and their order are those of the transcripts' channels (sofia
inbound caller: outbound_sipp_uac_plain CHANNEL_DATA; sofia outbound leg: P01 a1's
CHANNEL_ORIGINATE / CHANNEL_ANSWER; CDR variables: CHANNEL_HANGUP_COMPLETE), filled in
with this call's values.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from simulator.clock import fs_date_local, rfc2822

if TYPE_CHECKING:
    from simulator.channel import Channel

SDP_REMOTE = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
)
SDP_LOCAL = (
    "v=0\r\no=FreeSWITCH 1795484956 1795484957 IN IP4 {ip}\r\ns=FreeSWITCH\r\nc=IN IP4 {ip}\r\n"
    "t=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)

HANGUP_Q850 = {
    "NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_USER_RESPONSE": 18, "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21, "UNALLOCATED_NUMBER": 1,
    "NORMAL_TEMPORARY_FAILURE": 41, "DESTINATION_OUT_OF_ORDER": 27, "ORIGINATOR_CANCEL": 487,
    "LOSE_RACE": 502, "ALLOTTED_TIMEOUT": 602, "USER_NOT_REGISTERED": 606,
    "NO_ROUTE_DESTINATION": 3, "CHAN_NOT_IMPLEMENTED": 66, "RECOVERY_ON_TIMER_EXPIRE": 102,
    "MANAGER_REQUEST": 503, "NORMAL_UNSPECIFIED": 31, "INVALID_NUMBER_FORMAT": 28,
    "INCOMPATIBLE_DESTINATION": 88, "EXCHANGE_ROUTING_ERROR": 25, "SERVICE_UNAVAILABLE": 63,
}
# SIP status a failing leg gives for a cause (Reject endpoints), and the reverse.
CAUSE_SIP = {"USER_BUSY": 486, "CALL_REJECTED": 603, "NO_ANSWER": 480, "UNALLOCATED_NUMBER": 404,
             "NORMAL_TEMPORARY_FAILURE": 503, "SUBSCRIBER_ABSENT": 480, "NO_USER_RESPONSE": 408,
             "DESTINATION_OUT_OF_ORDER": 502, "NORMAL_CLEARING": 480, "INVALID_NUMBER_FORMAT": 484}


def sofia_inbound_vars(ch: Channel, caller: str, host: str, port: int, dest: str, fs_host: str) -> list[tuple[str, str]]:
    call_id = "%d-%d@%s" % (random.randint(1, 9), random.randint(1000, 99999), host)
    tag = "%dSIPpTag00%d" % (random.randint(1000, 99999), random.randint(1, 9))
    stamp = str(ch.times["created"])
    epoch = ch.sim.clock.epoch()
    return [
        ("direction", "inbound"), ("uuid", ch.uuid), ("session_id", str(ch.session_id)),
        ("sip_from_user", caller), ("sip_from_port", str(port)), ("sip_from_uri", "%s@%s:%d" % (caller, host, port)),
        ("sip_from_host", host), ("video_media_flow", "disabled"), ("audio_media_flow", "disabled"),
        ("text_media_flow", "disabled"), ("channel_name", ch.name), ("sip_call_id", call_id),
        ("sip_local_network_addr", fs_host), ("sip_network_ip", host), ("sip_network_port", str(port)),
        ("sip_invite_stamp", stamp), ("sip_received_ip", host), ("sip_received_port", str(port)),
        ("sip_via_protocol", "udp"), ("sip_authorized", "true"), ("sip_acl_authed_by", "domains"),
        ("sip_from_user_stripped", caller), ("sip_from_tag", tag), ("sofia_profile_name", "internal"),
        ("sofia_profile_url", "sip:mod_sofia@%s:5060" % fs_host), ("recovery_profile_name", "internal"),
        ("sip_full_via", "SIP/2.0/UDP %s:%d;branch=z9hG4bK-%d-1-0" % (host, port, random.randint(1000, 99999))),
        ("sip_from_display", ch.profile["caller_id_name"] or caller),
        ("sip_full_from", "%s <sip:%s@%s:%d>;tag=%s" % (ch.profile["caller_id_name"] or caller, caller, host, port, tag)),
        ("sip_full_to", "<sip:%s@%s:5060>" % (dest, fs_host)), ("sip_req_user", dest), ("sip_req_port", "5060"),
        ("sip_req_uri", "%s@%s:5060" % (dest, fs_host)), ("sip_req_host", fs_host), ("sip_to_user", dest),
        ("sip_to_port", "5060"), ("sip_to_uri", "%s@%s:5060" % (dest, fs_host)), ("sip_to_host", fs_host),
        ("sip_contact_user", caller), ("sip_contact_port", str(port)), ("sip_contact_uri", "%s@%s:%d" % (caller, host, port)),
        ("sip_contact_host", host), ("rtp_use_codec_string", "OPUS,G722,PCMU,PCMA,H264,VP8"),
        ("sip_via_host", host), ("sip_via_port", str(port)), ("max_forwards", "70"),
        ("presence_id", "%s@%s" % (caller, host)),
        ("switch_r_sdp", SDP_REMOTE.format(ip=host, port=port + 11000)),
        ("ep_codec_string", "CORE_PCM_MODULE.PCMU@8000h@20i@64000b"),
        ("endpoint_disposition", "DELAYED NEGOTIATION"), ("call_uuid", ch.uuid),
        ("outside_call", "true"), ("RFC2822_DATE", rfc2822(epoch)), ("export_vars", "RFC2822_DATE"),
    ]


def media_vars(ch: Channel, remote_ip: str, remote_port: int, fs_host: str) -> list[tuple[str, str]]:
    """Set when media is negotiated (pre_answer / answer of a sofia channel)."""
    local_port = random.randint(16384, 32767) & ~1
    return [
        ("remote_video_media_flow", "inactive"), ("remote_text_media_flow", "inactive"),
        ("remote_audio_media_flow", "sendrecv"), ("audio_media_flow", "sendrecv"),
        ("rtp_audio_recv_pt", "0"), ("rtp_use_codec_name", "PCMU"), ("rtp_use_codec_rate", "8000"),
        ("rtp_use_codec_ptime", "20"), ("rtp_use_codec_channels", "1"),
        ("rtp_last_audio_codec_string", "PCMU@8000h@20i@1c"), ("read_codec", "PCMU"),
        ("original_read_codec", "PCMU"), ("read_rate", "8000"), ("original_read_rate", "8000"),
        ("write_codec", "PCMU"), ("write_rate", "8000"), ("dtmf_type", "rfc2833"),
        ("local_media_ip", fs_host), ("local_media_port", str(local_port)), ("advertised_media_ip", fs_host),
        ("rtp_use_timer_name", "soft"), ("rtp_use_pt", "0"), ("rtp_use_ssrc", str(random.randint(10**9, 4 * 10**9))),
        ("rtp_2833_send_payload", "101"), ("rtp_2833_recv_payload", "101"),
        ("remote_media_ip", remote_ip), ("remote_media_port", str(remote_port)),
        ("rtp_local_sdp_str", SDP_LOCAL.format(ip=fs_host, port=local_port)),
    ]


def sofia_outbound_vars(ch: Channel, user: str, contact: str, originator: Channel | None, fs_host: str) -> list[tuple[str, str]]:
    out = [
        ("direction", "outbound"), ("is_outbound", "true"), ("uuid", ch.uuid), ("session_id", str(ch.session_id)),
        ("sip_local_network_addr", fs_host), ("sip_profile_name", "internal"), ("text_media_flow", "disabled"),
        ("channel_name", ch.name), ("sip_destination_url", "sip:%s" % contact), ("max_forwards", "69"),
    ]
    if originator is not None:
        out += [("originator_codec", "PCMU@8000h@20i"), ("originator", originator.uuid),
                ("signal_bond", originator.uuid)]
    return out


def sofia_outbound_answer_vars(ch: Channel, user: str, host: str, port: int) -> list[tuple[str, str]]:
    tag = "%dSIPpTag01%d" % (random.randint(1000, 99999), random.randint(1, 9))
    return [
        ("sip_reply_host", host), ("sip_reply_port", str(port)), ("sip_network_ip", host),
        ("sip_network_port", str(port)), ("sip_to_user", user), ("sip_to_port", str(port)),
        ("sip_to_uri", "%s@%s:%d" % (user, host, port)), ("sip_to_host", host), ("sip_to_tag", tag),
        ("sip_call_id", "%08x-%04x-sim" % (random.getrandbits(32), random.getrandbits(16))),
        ("switch_r_sdp", SDP_REMOTE.format(ip=host, port=port + 11000)),
        ("ep_codec_string", "CORE_PCM_MODULE.PCMU@8000h@20i@64000b"),
    ]


def cdr_vars(ch: Channel) -> list[tuple[str, str]]:
    """The CDR block switch_core_session_reporting_state() adds before HANGUP_COMPLETE."""
    t = ch.times
    end = t["hangup"] or ch.sim.clock.usec()
    created = t["created"]

    def stamp(us: int) -> str:
        return fs_date_local(us / 1e6)

    out: list[tuple[str, str]] = [("hangup_cause", ch.hangup_cause or "NORMAL_CLEARING"),
                                  ("hangup_cause_q850", str(HANGUP_Q850.get(ch.hangup_cause or "", 16))),
                                  ("digits_dialed", ch.digits_dialed or "none"),
                                  ("start_stamp", stamp(created)), ("profile_start_stamp", stamp(created))]
    if t["answered"]:
        out.append(("answer_stamp", stamp(t["answered"])))
    if t["bridged"]:
        out.append(("bridge_stamp", stamp(t["bridged"])))
    if t["progress"]:
        out.append(("progress_stamp", stamp(t["progress"])))
    if t["progress_media"]:
        out.append(("progress_media_stamp", stamp(t["progress_media"])))
    out.append(("end_stamp", stamp(end)))
    for name, us in (("start", created), ("profile_start", created), ("answer", t["answered"]),
                     ("bridge", t["bridged"]), ("last_hold", 0)):
        out += [(name + "_epoch", str(us // 1_000_000)), (name + "_uepoch", str(us))]
    out += [("hold_accum_seconds", "0"), ("hold_accum_usec", "0"), ("hold_accum_ms", "0"),
            ("resurrect_epoch", "0"), ("resurrect_uepoch", "0")]
    for name, us in (("progress", t["progress"]), ("progress_media", t["progress_media"]), ("end", end)):
        out += [(name + "_epoch", str(us // 1_000_000)), (name + "_uepoch", str(us))]
    if ch.last_app:
        out += [("last_app", ch.last_app[0]), ("last_arg", ch.last_app[1])]
    name, num = ch.profile["caller_id_name"], ch.profile["caller_id_number"]
    out.append(("caller_id", '"%s" <%s>' % (name, num) if name else num))
    ans = t["answered"]
    durations = {
        "duration": end - created, "billsec": end - ans if ans else 0,
        "progress": t["progress"] - created if t["progress"] else 0,
        "answer": ans - created if ans else 0, "wait": (ans or end) - created,
        "progress_media": t["progress_media"] - created if t["progress_media"] else 0,
        "flow_bill": end - created,
    }
    for unit, div in (("sec", 1_000_000), ("msec", 1000), ("usec", 1)):
        for key in ("duration", "billsec", "progress", "answer", "wait", "progress_media", "flow_bill"):
            value = durations[key] // div
            if key == "duration":
                label = {"sec": "duration", "msec": "mduration", "usec": "uduration"}[unit]
            elif key == "billsec":
                label = "bill" + unit
            else:
                label = key + unit
            out.append((label, str(max(0, value))))
    return out
