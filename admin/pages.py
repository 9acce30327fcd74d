"""Templates of the panel's own pages (profile, live state), served from memory so the
package needs no template files; each extends Flask-Admin's master layout.

The layout (``pbx/base.html``) adds the "Log out" button and the panel's one script of
event handlers. The panel's Content-Security-Policy (``admin.security``) allows scripts
only from the panel itself or with the request's nonce, so inline event handlers
(``onclick="..."``) do not run: our templates mark elements with ``data-pbx-*``
attributes instead, and the few Flask-Admin templates that carry inline handlers are
served patched the same way (``FLASK_ADMIN_PATCHES``; a Flask-Admin upgrade that changes
them fails at start, not silently in the browser).
"""
from __future__ import annotations

from pathlib import Path

import flask_admin
from jinja2 import DictLoader

PROFILE = """{% extends 'admin/master.html' %}
{% block body %}
<h2>My profile</h2>
{% if employee is none and operator %}
  <p>Operator accounts have no employee profile: only a password.</p>
{% elif employee is none %}
  <p>This account is not linked to an employee, so there is no profile to edit.
  Ask your administrator to link it.</p>
{% else %}
  <p>Extension <strong>{{ employee.extension }}</strong></p>
  {% if saved %}<p class="alert alert-success">Saved. It takes effect on the next call.</p>{% endif %}
  <form method="post" class="admin-form">
    {{ form.csrf_token }}
    {% for field in [form.name, form.email, form.mobile, form.forward_to_mobile_after] %}
      <div class="mb-3">
        {{ field.label }} {{ field(class_="form-control") }}
        {% for e in field.errors %}<div class="text-danger field-error">{{ e }}</div>{% endfor %}
      </div>
    {% endfor %}
    {% for e in form_errors %}<div class="text-danger field-error">{{ e }}</div>{% endfor %}
    <button type="submit" class="btn btn-primary">Save</button>
  </form>
{% endif %}
<p class="mt-4"><a href="{{ url_for('.password') }}" id="change-password">Change my password</a></p>
{% endblock %}
"""

PASSWORD = """{% extends 'admin/master.html' %}
{% block body %}
<h2>Change my password</h2>
{% if saved %}<p class="alert alert-success" id="password-saved">Your password is changed. Your other
  sessions (other browsers and devices) are signed out; this one stays signed in.</p>{% endif %}
<form method="post" class="admin-form" autocomplete="off">
  {{ form.csrf_token }}
  {% for field in [form.current_password, form.new_password, form.repeat_password] %}
    <div class="mb-3">
      {{ field.label }} {{ field(class_="form-control") }}
      {% for e in field.errors %}<div class="text-danger field-error">{{ e }}</div>{% endfor %}
    </div>
  {% endfor %}
  <button type="submit" class="btn btn-primary">Change password</button>
</form>
{% endblock %}
"""

LIVE = """{% extends 'admin/master.html' %}
{% block body %}
<h2>Live state</h2>
{% if not available %}
  <p>Live state is not available: the admin panel runs without Redis.</p>
{% else %}
  {% if chooser %}
  <form method="get" class="form-inline mb-3" id="tenant-chooser">
    <label class="mr-2" for="find">Company:</label>
    <input type="search" name="find" id="find" value="{{ find }}" placeholder="name or SIP domain"
           class="form-control form-control-sm mr-2">
    <button type="submit" class="btn btn-sm btn-secondary mr-2">Find</button>
    <select name="tenant" data-pbx-autosubmit class="form-control form-control-sm">
      {% for t in tenants %}
        <option value="{{ t.id }}" {% if t.id == tenant_id %}selected{% endif %}>{{ t.name }} ({{ t.sip_domain }})</option>
      {% endfor %}
    </select>
    <small class="text-muted ml-2" id="chooser-note">
      {%- if matching > limit %}the first {{ limit }} of {{ matching }} {{ 'matches' if find else 'companies' }}: type part of a name or domain to narrow
      {%- elif find %}{{ matching }} match{{ '' if matching == 1 else 'es' }}{% endif -%}
    </small>
  </form>
  {% endif %}
  <p class="alert alert-warning" id="live-problem" {% if not problem %}hidden{% endif %}>{{ problem }}</p>
  <h3>Calls in progress <small id="live-count">{{ calls|length }}</small></h3>
  <table class="table table-sm" id="live-calls">
    <thead><tr><th>Caller</th><th>Number dialled</th><th>State</th><th>Since</th><th>In this state</th>
      <th>Duration</th><th>Details</th></tr></thead>
    <tbody>
    {% for c in calls %}
      <tr data-call="{{ c.uuid }}" data-state="{{ c.state }}"><td>{{ c.caller }}</td><td>{{ c.destination }}</td>
          <td>{{ c.state_text }}</td><td>{{ c.since }}</td><td data-pbx-since="{{ c.since_ms }}">{{ c.in_state }}</td>
          <td data-pbx-since="{{ c.started_ms }}">{{ c.duration }}</td><td>{{ c.details }}</td></tr>
    {% else %}
      <tr><td colspan="7">No calls in progress.</td></tr>
    {% endfor %}
    </tbody>
  </table>
  <h3>Members</h3>
  <table class="table table-sm" id="live-members">
    <thead><tr><th>Department</th><th>Member</th><th>State</th><th>Calls today</th><th>Talk time today</th>
      <th></th></tr></thead>
    <tbody>
    {% for m in members %}
      <tr data-state="{{ m.state }}"><td>{{ m.department }}</td><td>{{ m.employee }}</td><td>{{ m.state_text }}</td>
        <td>{{ m.calls_today }}</td><td>{{ m.talk_today }}</td>
        <td>
          {% if not m.logged_in or m.state == 'paused' %}
          <form method="post" action="{{ login_url }}" class="d-inline">
            <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
            <input type="hidden" name="id" value="{{ m.employee_id }}">
            <button type="submit" class="btn btn-sm btn-primary">{{ 'Log in' if not m.logged_in else 'Resume' }}</button>
          </form>
          {% endif %}
          {% if m.logged_in %}
          <form method="post" action="{{ logout_url }}" class="d-inline">
            <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
            <input type="hidden" name="id" value="{{ m.employee_id }}">
            <button type="submit" class="btn btn-sm btn-secondary">Log out</button>
          </form>
          {% endif %}
        </td></tr>
    {% else %}
      <tr><td colspan="6">No department has members.</td></tr>
    {% endfor %}
    </tbody>
  </table>
  <h3>Queues</h3>
  <table class="table table-sm" id="live-queues">
    <thead><tr><th>Department</th><th>Position</th><th>Caller</th><th>Waiting</th><th>Call</th></tr></thead>
    <tbody>
    {% for q in queues %}
      {% for w in q.waiting %}
      <tr data-department="{{ q.department_id }}"><td>{{ q.department }}</td><td>{{ w.position }}</td>
        <td>{{ w.caller }}</td><td>{{ w.waited_s }} s</td><td>{{ w.uuid }}</td></tr>
      {% else %}
      <tr data-department="{{ q.department_id }}"><td>{{ q.department }}</td>
        <td colspan="4" class="text-muted">{{ 'nobody waiting' if q.known else 'unknown (live state unavailable)' }}
        </td></tr>
      {% endfor %}
    {% else %}
      <tr><td colspan="5">No departments.</td></tr>
    {% endfor %}
    </tbody>
  </table>
  <h3>Callbacks</h3>
  <table class="table table-sm" id="live-callbacks">
    <thead><tr><th>Department</th><th>Caller</th><th>Waiting since</th><th>Status</th><th></th></tr></thead>
    <tbody>
    {% for cb in callbacks %}
      <tr data-callback="{{ cb.id }}"><td>{{ cb.department }}</td><td>{{ cb.caller }}</td><td>{{ cb.waited_s }} s</td>
        <td>{{ cb.status }}</td>
        <td>{% if cb.cancellable %}
          <form method="post" action="{{ cancel_url }}" class="d-inline">
            <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
            <input type="hidden" name="id" value="{{ cb.id }}">
            {% if chooser %}<input type="hidden" name="tenant" value="{{ tenant_id }}">{% endif %}
            <button type="submit" class="btn btn-sm btn-warning">Cancel</button>
          </form>{% endif %}</td></tr>
    {% else %}
      <tr><td colspan="5">No callbacks waiting.</td></tr>
    {% endfor %}
    </tbody>
  </table>
  <p class="text-muted">Refreshed every {{ refresh_seconds }} s. "Paused" members get no offers until
    logged in again (Resume) or until they place a call from their phone.</p>
  <script {{ admin_csp_nonce_attribute }}>
  (function () {
    var url = {{ json_url|tojson }}, loginUrl = {{ login_url|tojson }}, logoutUrl = {{ logout_url|tojson }};
    var token = {{ csrf_token()|tojson }}, cancelUrl = {{ cancel_url|tojson }};
    var tenantField = {{ ('<input type="hidden" name="tenant" value="%s">' % tenant_id if chooser else '')|tojson }};
    function esc(s) { var d = document.createElement('div'); d.textContent = s == null ? '' : s; return d.innerHTML; }
    function button(action, id, label, style) {
      return '<form method="post" action="' + esc(action) + '" class="d-inline">' +
             '<input type="hidden" name="csrf_token" value="' + esc(token) + '">' +
             '<input type="hidden" name="id" value="' + esc(id) + '">' +
             '<button type="submit" class="btn btn-sm ' + style + '">' + esc(label) + '</button></form> ';
    }
    /* Durations tick every second from the server's epoch ms (offset to this browser's clock). */
    var skew = {{ now_ms|tojson }} - Date.now();
    function elapsed(ms) {
      var s = Math.max(0, Math.floor((Date.now() + skew - ms) / 1000)), h = Math.floor(s / 3600);
      var mm = Math.floor(s % 3600 / 60), ss = ('0' + s % 60).slice(-2);
      return h ? h + ':' + ('0' + mm).slice(-2) + ':' + ss : mm + ':' + ss;
    }
    function tick() {
      document.querySelectorAll('#live-calls [data-pbx-since]').forEach(function (el) {
        var ms = +el.getAttribute('data-pbx-since'); if (ms > 0) { el.textContent = elapsed(ms); }
      });
    }
    setInterval(tick, 1000);
    function draw(data) {
      skew = data.now_ms - Date.now();
      var rows = data.calls.map(function (c) {
        return '<tr data-call="' + esc(c.uuid) + '" data-state="' + esc(c.state) + '"><td>' + esc(c.caller) +
               '</td><td>' + esc(c.destination) + '</td><td>' + esc(c.state_text) + '</td><td>' + esc(c.since) +
               '</td><td data-pbx-since="' + esc(c.since_ms) + '">' + esc(c.in_state) +
               '</td><td data-pbx-since="' + esc(c.started_ms) + '">' + esc(c.duration) +
               '</td><td>' + esc(c.details) + '</td></tr>';
      });
      document.querySelector('#live-calls tbody').innerHTML =
        rows.join('') || '<tr><td colspan="7">No calls in progress.</td></tr>';
      document.getElementById('live-count').textContent = data.calls.length;
      var members = data.members.map(function (m) {
        var actions = '';
        if (!m.logged_in || m.state === 'paused') {
          actions += button(loginUrl, m.employee_id, m.logged_in ? 'Resume' : 'Log in', 'btn-primary');
        }
        if (m.logged_in) { actions += button(logoutUrl, m.employee_id, 'Log out', 'btn-secondary'); }
        return '<tr data-state="' + esc(m.state) + '"><td>' + esc(m.department) + '</td><td>' + esc(m.employee) +
               '</td><td>' + esc(m.state_text) + '</td><td>' + esc(m.calls_today) + '</td><td>' +
               esc(m.talk_today) + '</td><td>' + actions + '</td></tr>';
      });
      document.querySelector('#live-members tbody').innerHTML =
        members.join('') || '<tr><td colspan="6">No department has members.</td></tr>';
      var queues = data.queues.map(function (q) {
        var head = '<tr data-department="' + esc(q.department_id) + '"><td>' + esc(q.department) + '</td>';
        if (!q.waiting.length) {
          return head + '<td colspan="4" class="text-muted">' +
                 (q.known ? 'nobody waiting' : 'unknown (live state unavailable)') + '</td></tr>';
        }
        return q.waiting.map(function (w) {
          return head + '<td>' + esc(w.position) + '</td><td>' + esc(w.caller) + '</td><td>' + esc(w.waited_s) +
                 ' s</td><td>' + esc(w.uuid) + '</td></tr>';
        }).join('');
      });
      document.querySelector('#live-queues tbody').innerHTML =
        queues.join('') || '<tr><td colspan="5">No departments.</td></tr>';
      var callbacks = (data.callbacks || []).map(function (cb) {
        var cancel = !cb.cancellable ? '' :
          '<form method="post" action="' + esc(cancelUrl) + '" class="d-inline">' +
          '<input type="hidden" name="csrf_token" value="' + esc(token) + '">' +
          '<input type="hidden" name="id" value="' + esc(cb.id) + '">' + tenantField +
          '<button type="submit" class="btn btn-sm btn-warning">Cancel</button></form>';
        return '<tr data-callback="' + esc(cb.id) + '"><td>' + esc(cb.department) + '</td><td>' + esc(cb.caller) +
               '</td><td>' + esc(cb.waited_s) + ' s</td><td>' + esc(cb.status) + '</td><td>' + cancel + '</td></tr>';
      });
      document.querySelector('#live-callbacks tbody').innerHTML =
        callbacks.join('') || '<tr><td colspan="5">No callbacks waiting.</td></tr>';
      var problem = document.getElementById('live-problem');
      problem.textContent = data.problem || '';
      problem.hidden = !data.problem;
    }
    setInterval(function () {
      fetch(url, {credentials: 'same-origin'}).then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) { if (d) { draw(d); } });
    }, {{ refresh_seconds * 1000 }});
  })();
  </script>
{% endif %}
{% endblock %}
"""

SIP_PASSWORD_ACTION = """<div class="card mt-4" id="sip-password-action"><div class="card-body">
  <h5 class="card-title">SIP password</h5>
  <p>The phone of {{ model.extension }} registers as <code>{{ model.extension }}@{{ model.tenant.sip_domain }}</code>.
  A new password replaces the current one at once: the phone must be given the new one.
  It is shown only once, on the next page.</p>
  <form method="post" action="{{ url_for('.sip_password', id=model.id) }}"
        data-pbx-confirm="Replace the SIP password of {{ model.extension }}? The phone stops registering until it has the new one.">
    <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
    <div class="form-check mb-2">
      <input class="form-check-input" type="checkbox" name="email_it" value="y" id="email_it"
             {% if not model.email %}disabled{% endif %}>
      <label class="form-check-label" for="email_it">E-mail it to the employee
        {% if model.email %}({{ model.email }}){% else %}(no e-mail address on file){% endif %}</label>
    </div>
    <button type="submit" class="btn btn-warning">Generate new SIP password</button>
  </form>
</div></div>
"""

EMPLOYEE_EDIT = """{% extends 'admin/model/edit.html' %}
{% block body %}{{ super() }}{% include 'pbx/sip_password_action.html' %}{% endblock %}
"""

EMPLOYEE_DETAILS = """{% extends 'admin/model/details.html' %}
{% block body %}{{ super() }}{% include 'pbx/sip_password_action.html' %}{% endblock %}
"""

SIP_PASSWORD = """{% extends 'admin/master.html' %}
{% block body %}
<h2>New SIP password for {{ employee.extension }} {{ employee.name }}</h2>
<p class="alert alert-warning">This is the only time the password is shown. Copy it into the phone now;
  the old password no longer works.</p>
<table class="table table-sm w-auto" id="sip-credentials">
  <tr><th>SIP user</th><td><code>{{ employee.extension }}</code></td></tr>
  <tr><th>Domain</th><td><code>{{ domain }}</code></td></tr>
  <tr><th>Password</th><td><code id="sip-password">{{ password }}</code></td></tr>
</table>
{% if mail_note %}
  <p class="alert {{ 'alert-success' if mailed else 'alert-danger' }}" id="mail-note">{{ mail_note }}</p>
{% endif %}
<p><a href="{{ url_for('.details_view', id=employee.id) }}">Back to {{ employee.extension }} {{ employee.name }}</a></p>
{% endblock %}
"""

EXPLAIN = """{% extends 'admin/master.html' %}
{% block body %}
<h2>Routing explainer</h2>
<p>What happens if a caller calls one of the company's numbers at a given time: the caller
rules, the schedule, the target and who would ring, as a live call decides it. Rules that
look the caller up (last agent, CRM) treat the caller as unknown here.</p>
<form method="get" class="admin-form mb-3" id="explain-form">
  {% if operator %}
  <div class="mb-2"><label for="tenant">Company (SIP domain)</label>
    <input class="form-control" name="tenant" id="tenant" value="{{ field.tenant }}" placeholder="demo.pbx.local"></div>
  {% endif %}
  <div class="mb-2"><label for="caller">Caller (number, or the employee's extension for an employee's call)</label>
    <input class="form-control" name="caller" id="caller" value="{{ field.caller }}" placeholder="+78121234567"></div>
  <div class="mb-2"><label for="dialed">Dialled (a company number, or for an employee's call an extension or an outside number)</label>
    <input class="form-control" name="dialed" id="dialed" value="{{ field.dialed }}" placeholder="+74950000003"></div>
  <div class="mb-2"><label for="at">When (company's local time; empty: now)</label>
    <input class="form-control" name="at" id="at" value="{{ field.at }}" placeholder="2026-11-28 21:00"></div>
  <div class="mb-2"><label><input type="checkbox" name="internal" value="1" {% if internal %}checked{% endif %}>
    an employee's call (from their phone)</label></div>
  <button type="submit" class="btn btn-primary">Explain</button>
</form>
{% if problem %}<p class="alert alert-danger" id="explain-problem">{{ problem }}</p>{% endif %}
{% if text %}<pre id="explain-result">{{ text }}</pre>{% endif %}
{% endblock %}
"""

BASE = """{% extends 'admin/base.html' %}
{% block access_control %}
  {% if pbx_user %}
  <form method="post" action="{{ url_for('auth.logout') }}" class="form-inline ml-lg-3" id="logout-form">
    <input name="csrf_token" type="hidden" value="{{ csrf_token() }}">
    <span class="navbar-text mr-2">{{ pbx_user.username }}</span>
    <button type="submit" class="btn btn-sm btn-outline-light">Log out</button>
  </form>
  {% endif %}
{% endblock %}
{% block tail_js %}
{{ super() }}
<script {{ admin_csp_nonce_attribute }}>
(function () {
  /* The panel's event handlers (no inline onclick: see admin.pages). */
  document.addEventListener('click', function (e) {
    var el = e.target.closest('[data-pbx-action]');
    if (el) { e.preventDefault(); modelActions.execute(el.getAttribute('data-pbx-action')); return; }
    el = e.target.closest('[data-pbx-add-inline]');
    if (el) { e.preventDefault(); faForm.addInlineField(el, el.getAttribute('data-pbx-add-inline')); return; }
    el = e.target.closest('[data-pbx-no-follow]');
    if (el) { e.preventDefault(); return; }
    el = e.target.closest('button[data-pbx-confirm], a[data-pbx-confirm]');
    if (el && !window.confirm(el.getAttribute('data-pbx-confirm'))) { e.preventDefault(); e.stopPropagation(); }
  }, true);
  document.addEventListener('submit', function (e) {
    var q = e.target.getAttribute && e.target.getAttribute('data-pbx-confirm');
    if (q && !window.confirm(q)) { e.preventDefault(); }
  });
  document.addEventListener('change', function (e) {
    if (e.target.hasAttribute && e.target.hasAttribute('data-pbx-autosubmit')) { e.target.form.submit(); }
  });
  /* Route targets (admin.targets): the kind first, then only the fields that kind uses;
     the searched list of the tenant's rows follows the kind. */
  if (window.jQuery) {
    var REF_KINDS = ['department', 'employee', 'menu', 'voicemail', 'fax'];
    var showTarget = function (kindEl, changed) {
      var prefix = kindEl.id.slice(0, -'_kind'.length), kind = kindEl.value;
      var group = function (id) { var el = document.getElementById(id); return el && jQuery(el).closest('.form-group'); };
      var ref = document.getElementById(prefix + '_ref_id');
      if (!ref || !ref.hasAttribute('data-pbx-target')) { return; }
      if (changed) {
        var $ref = jQuery(ref);
        ref.setAttribute('data-url', ref.getAttribute('data-url').replace(/kind=[^&]*/, 'kind=' + encodeURIComponent(kind)));
        ref.removeAttribute('data-json'); ref.value = '';
        if ($ref.data('select2')) { $ref.select2('destroy'); }
        if (window.faForm) { faForm.applyStyle($ref, 'select2-ajax'); }
      }
      var g = group(prefix + '_ref_id'); if (g) { g.toggle(REF_KINDS.indexOf(kind) >= 0); }
      g = group(prefix + '_number'); if (g) { g.toggle(kind === 'external'); }
      g = group(prefix + '_sound'); if (g) { g.toggle(kind === 'announcement'); }
    };
    jQuery(document).on('change', 'select[id$="_kind"]', function () { showTarget(this, true); });
    jQuery(function () { jQuery('select[id$="_kind"]').each(function () { showTarget(this, false); }); });
  }
})();
</script>
{% endblock %}
"""

# Flask-Admin templates with inline event handlers: (template, original, replacement).
FLASK_ADMIN_PATCHES = (
    ("admin/actions.html", "onclick=\"return modelActions.execute('{{ p[0] }}');\"",
     'data-pbx-action="{{ p[0] }}"'),
    ("admin/model/inline_list_base.html", "onclick=\"faForm.addInlineField(this, '{{ field.id }}');\"",
     'data-pbx-add-inline="{{ field.id }}"'),
    ("admin/model/row_actions.html",
     "onclick=\"return faHelpers.safeConfirm('{{ _gettext('Are you sure you want to delete this record?') }}');\"",
     "data-pbx-confirm=\"{{ _gettext('Are you sure you want to delete this record?') }}\""),
    ("admin/model/layout.html", 'onclick="return false;"', "data-pbx-no-follow"),
)


def patched_flask_admin_templates(theme: str = "bootstrap4") -> dict[str, str]:
    """Flask-Admin's templates of ``FLASK_ADMIN_PATCHES`` with data attributes instead of
    inline handlers; raises RuntimeError if one no longer has the handler we replace."""
    root = Path(flask_admin.__file__).parent / "templates" / theme
    patched: dict[str, str] = {}
    for name, original, replacement in FLASK_ADMIN_PATCHES:
        text = patched.get(name) or (root / name).read_text(encoding="utf-8")
        if original not in text:
            raise RuntimeError("Flask-Admin's %s changed: no %s to replace; update admin/pages.py" % (name, original))
        patched[name] = text.replace(original, replacement)
    return patched


TEMPLATES = {"pbx/base.html": BASE, "pbx/profile.html": PROFILE, "pbx/password.html": PASSWORD, "pbx/explain.html": EXPLAIN, "pbx/live.html": LIVE, "pbx/sip_password.html": SIP_PASSWORD,
             "pbx/sip_password_action.html": SIP_PASSWORD_ACTION, "pbx/employee_edit.html": EMPLOYEE_EDIT,
             "pbx/employee_details.html": EMPLOYEE_DETAILS}


def loader() -> DictLoader:
    from admin.schedules import TEMPLATES as SCHEDULE_TEMPLATES

    return DictLoader({**patched_flask_admin_templates(), **TEMPLATES, **SCHEDULE_TEMPLATES})
