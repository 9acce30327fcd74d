#!/bin/sh
# Applies the freeswitch-conf overlay (mounted at /pbx/freeswitch-conf) to the stock
# configuration of a FreeSWITCH 1.10 container, then runs the container's command.
# The same steps as freeswitch-conf/README.md "Install"; safe to run at every start.
set -eu
CONF=${FREESWITCH_CONF:-/etc/freeswitch}
SRC=/pbx/freeswitch-conf

if [ -z "${PBX_ESL_PASSWORD:-}" ]; then
    echo "freeswitch-overlay: PBX_ESL_PASSWORD is not set (docker/.env)" >&2
    exit 64
fi

cp "$SRC/vars.xml" "$CONF/pbx_vars.xml"
if ! grep -q 'data="pbx_vars.xml"' "$CONF/vars.xml"; then
    # One line of its own, just before the closing include tag of the stock file.
    sed -i 's#^\(\s*\)</include>#  <X-PRE-PROCESS cmd="include" data="pbx_vars.xml"/>\n\1</include>#' "$CONF/vars.xml"
fi
cp "$SRC"/autoload_configs/*.xml "$CONF/autoload_configs/"
cp "$SRC/sip_profiles/pbx.xml" "$CONF/sip_profiles/"
mkdir -p "$CONF/sip_profiles/pbx"
cp "$SRC"/sip_profiles/pbx/*.xml "$CONF/sip_profiles/pbx/"
cp "$SRC"/dialplan/pbx_*.xml "$CONF/dialplan/"

# Switch off the stock profiles, dialplans and demo users (toll-fraud risk).
for f in sip_profiles/internal.xml sip_profiles/external.xml dialplan/public.xml dialplan/default.xml; do
    if [ -e "$CONF/$f" ]; then mv "$CONF/$f" "$CONF/$f.off"; fi
done
if [ -d "$CONF/directory/default" ]; then mv "$CONF/directory/default" "$CONF/directory/default.off"; fi

# mod_xml_curl is not loaded by the stock modules.conf.xml.
if ! grep -q '^[[:space:]]*<load module="mod_xml_curl"/>' "$CONF/autoload_configs/modules.conf.xml"; then
    sed -i 's#<modules>#<modules>\n    <load module="mod_xml_curl"/>#' "$CONF/autoload_configs/modules.conf.xml"
fi

mkdir -p /var/lib/freeswitch/recordings/pbx/fallback
if id freeswitch >/dev/null 2>&1; then
    chown -R freeswitch:freeswitch /var/lib/freeswitch/recordings/pbx || true
fi

exec "$@"
