"""The closing lines the probe scripts share: the device and peer, then the rows as JSON."""

from __future__ import annotations

import json


def save_rows(path: str, rt, peer: str, rows: list, **extra) -> None:
    """Print the device and ``peer``, then write ``rows`` (and ``extra``) with the device to ``path``."""
    info = rt.ctx.info
    print(f"device: {info['device_name']}, driver {info['driver']}; peer {peer}")
    with open(path, "w") as f:
        json.dump({"device": info["device_name"], "driver": info["driver"], "peer": peer, "rows": rows, **extra},
                  f, indent=2)
    print(f"saved {path}")
