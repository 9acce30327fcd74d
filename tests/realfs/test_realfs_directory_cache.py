"""FreeSWITCH keeps our directory's user answers (``cacheable``), so the ``user/`` legs
of a ring-all do not each wait for an HTTP lookup (admin.directory.USER_CACHE_MS).

FreeSWITCH 1.10.12 behaviour relied on (switch_xml.c): switch_xml_locate_user_merged
caches a user element that has ``cacheable`` under ("id", user, domain), for sofia's
digest authentication of a REGISTER as for a ``user/`` leg; the ``xml_flush_cache id
USER DOMAIN`` api (mod_commands) removes that entry and says how many it removed.
"""
from __future__ import annotations

from tests.realfs.conftest import DOMAIN, Stack


def test_a_registration_leaves_the_user_in_freeswitchs_cache(realfs_stack: Stack, phones) -> None:
    stack = realfs_stack
    stack.esl.api("xml_flush_cache id 103 %s" % DOMAIN)  # whatever an earlier test left
    phones("103", answer_after_ms=None)  # REGISTER, digest-authenticated through our directory
    reply = stack.esl.api("xml_flush_cache id 103 %s" % DOMAIN)
    assert reply.startswith("+OK cleared 1 entry"), reply
