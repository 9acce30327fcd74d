"""Admin panel (Flask + Flask-Admin) and FreeSWITCH's directory for mod_xml_curl.

    app.py        create_app(settings, session_factory, on_change=None) -> Flask
    auth.py       login/logout, the current admin user, bootstrap operator account
    scoping.py    TenantScopedView: the base ModelView that confines a tenant admin
    views.py      one ModelView per model, configured with class attributes
    directory.py  /freeswitch/directory blueprint (mod_xml_curl), HTTP basic auth
    cli.py        pbx-admin: migrate, seed the demo (SQLite), serve with gevent
"""
