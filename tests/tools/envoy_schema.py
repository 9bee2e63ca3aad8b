"""Parse deploy/envoy/envoy.yaml into Envoy's own Bootstrap message and print it as JSON.

Runs in .venv-envoy (see tests/tools/envoy-requirements.txt). The parse is strict: an unknown or
misspelt field exits 1 with protobuf's message. `--reject-probe` instead checks that strictness.
Output: {"bootstrap": <Bootstrap as JSON>, "managers": [<each listener's HttpConnectionManager>]}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The typed_config messages must be registered before ParseDict can resolve their @type.
import envoy.extensions.access_loggers.stream.v3.stream_pb2
import envoy.extensions.filters.http.router.v3.router_pb2
import envoy.extensions.retry.host.previous_hosts.v3.previous_hosts_pb2
import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401
import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from google.protobuf import json_format


def as_json(message: object) -> object:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    if argv[1:] == ["--reject-probe"]:
        try:
            json_format.ParseDict({"static_resources": {"clusterz": []}}, bootstrap_pb2.Bootstrap())
        except json_format.ParseError as exc:
            print(f"rejected: {exc}")
            return 0
        print("accepted a misspelt field")
        return 1
    try:
        bootstrap = json_format.ParseDict(
            yaml.safe_load(Path(argv[1]).read_text()), bootstrap_pb2.Bootstrap()
        )
    except json_format.ParseError as exc:
        print(f"{argv[1]}: {exc}", file=sys.stderr)
        return 1
    managers = []
    for listener in bootstrap.static_resources.listeners:
        manager = http_connection_manager_pb2.HttpConnectionManager()
        listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
        managers.append(as_json(manager))
    print(json.dumps({"bootstrap": as_json(bootstrap), "managers": managers}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
