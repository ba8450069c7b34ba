import os

from core.state import TELEMETRY_OFF

for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)
# Tests that run a flow in this process get Prefect's temporary server, whose first start (database
# migrations) took longer than its default 20 s on a busy 2-core machine and failed a CI run; set
# before anything imports prefect, whose settings are read once. (State.service_env sets the same
# for the CLI.)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
