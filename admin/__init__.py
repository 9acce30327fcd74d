"""Admin panel (Flask + Flask-Admin) and FreeSWITCH's directory for mod_xml_curl.

    app.py        create_app(settings, session_factory, on_change=None, *, redis_client=None,
                  login_throttle=None, session_lifetime=8 h) -> Flask
    auth.py       login/logout, roles, the current admin user, bootstrap operator account
    ratelimit.py  failed-login throttle per username + address (Redis or in memory)
    scoping.py    SecureView/TenantScopedView: the base ModelViews (roles, tenant scope,
                  scoped pickers, tenant-document validation on save)
    views.py      one ModelView per model, configured with class attributes (history:
                  calls, missed offers, voicemail messages are read-only)
    profile.py    "My profile": an account edits its linked employee
    live.py       live state: calls in progress and members' state (Redis), polled as JSON;
                  log a member in / out
    pages.py      templates of profile/live pages (in memory, extend Flask-Admin's master)
    directory.py  /freeswitch/directory blueprint (mod_xml_curl), HTTP basic auth
    cli.py        pbx-admin: migrate, seed the demo (SQLite), serve with gevent
"""
