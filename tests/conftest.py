import os

from core.state import TELEMETRY_OFF

for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)
