"""`provider-gateway` command line: `serve`, and client commands against a running server."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from provider_gateway import config as config_module
from provider_gateway.fakes.cli import add_command as add_fake_upstream
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

DEFAULT_TARGET = "localhost:50051"
# The client commands read the variables the Python and Node clients read (clients/python/README.md).
ENV_PREFIX = "PROVIDER_GATEWAY_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def _env(name: str) -> str | None:
    """A PROVIDER_GATEWAY_* variable; set but empty counts as unset, as in the clients."""
    return os.environ.get(ENV_PREFIX + name) or None


def _serve(args: argparse.Namespace) -> int:
    from provider_gateway.observability import logs
    from provider_gateway.server.app import GatewayServer
    from provider_gateway.server.event_loop import loop_factory

    logs.configure(args.log_level, args.log_format)
    try:
        config = config_module.load(args.config)
    except config_module.ConfigError as exc:
        print(f"provider-gateway: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.workers > 1:
        from provider_gateway.server.worker_limits import warn_of_unshared_limits
        from provider_gateway.server.workers import Supervisor, WorkerArgs

        try:
            warn_of_unshared_limits(config, args.workers)
        except config_module.ConfigError as exc:  # the workers would refuse it too, each with a traceback
            print(f"provider-gateway: bad configuration: {exc}", file=sys.stderr)
            return 2
        host = args.host or config.server.host
        port = config.server.port if args.port is None else args.port
        worker_args = WorkerArgs(args.config, host, port, args.log_level, args.log_format, args.loop)
        try:
            return Supervisor(args.workers, worker_args).run()
        except OSError as exc:
            print(f"provider-gateway: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
            return 1

    async def run() -> None:
        server = GatewayServer(config)
        port = await server.start(args.host, args.port)
        print(f"provider-gateway listening on {args.host or config.server.host}:{port}", flush=True)
        await server.serve_until_signalled()

    try:
        asyncio.run(run(), loop_factory=loop_factory(args.loop))
    except config_module.ConfigError as exc:
        print(f"provider-gateway: bad configuration: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"provider-gateway: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        if "bind" not in str(exc):  # grpc reports a port in use as RuntimeError("Failed to bind ...")
            raise
        print(f"provider-gateway: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


def _workers(text: str) -> int:
    from provider_gateway.server.workers import worker_count

    try:
        return worker_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _channel(args: argparse.Namespace) -> grpc.Channel:
    """Plaintext, or TLS when asked (`--tls`, or any of the files): system roots unless `--ca-file`,
    a client certificate for mutual TLS with `--cert-file` and `--key-file`."""
    # Checked before choosing plaintext: a TLS option given alone is refused, never ignored.
    if bool(args.cert_file) != bool(args.key_file):
        raise SystemExit("provider-gateway: --cert-file and --key-file go together")
    if not (args.tls or args.ca_file or args.cert_file):
        if args.server_name:
            raise SystemExit("provider-gateway: --server-name needs TLS (--tls or --ca-file)")
        return grpc.insecure_channel(args.target)

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            with open(path, "rb") as file:
                return file.read()
        except OSError as exc:
            raise SystemExit(f"provider-gateway: cannot read {path}: {exc.strerror}") from None

    credentials = grpc.ssl_channel_credentials(read(args.ca_file), read(args.key_file), read(args.cert_file))
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.target, credentials, options=options)


def _stub(args: argparse.Namespace) -> tuple[grpc.Channel, pb_grpc.ProviderServiceStub]:
    channel = _channel(args)
    return channel, pb_grpc.ProviderServiceStub(channel)  # type: ignore[no-untyped-call]


def _metadata(args: argparse.Namespace) -> list[tuple[str, str]] | None:
    """The key as the clients choose it: an argument before a variable, a key before a key file."""
    if args.api_key and args.api_key_file:
        raise SystemExit("provider-gateway: give --api-key or --api-key-file, not both")
    key = args.api_key or (None if args.api_key_file else _env("API_KEY"))
    key_file = args.api_key_file or (None if key else _env("API_KEY_FILE"))
    if key_file:  # a mounted secret: neither the command line nor the environment shows it
        try:
            with open(key_file) as file:
                key = file.read().strip()
        except OSError as exc:
            raise SystemExit(f"provider-gateway: cannot read {key_file}: {exc.strerror}") from None
        if not key:  # sending no key would fail later as UNAUTHENTICATED, far from the cause
            raise SystemExit(f"provider-gateway: the API key file {key_file} is empty")
    return [("authorization", f"Bearer {key}")] if key else None


def _chat(args: argparse.Namespace) -> int:
    channel, stub = _stub(args)
    messages = []
    if args.system:
        messages.append(pb.Message(role=pb.ROLE_SYSTEM, content=[pb.ContentPart(text=args.system)]))
    messages.append(pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=" ".join(args.prompt))]))
    request = pb.ChatRequest(model=args.model, messages=messages)
    if args.max_tokens:
        request.max_tokens = args.max_tokens
    finish = None
    reasoning_shown = False
    with channel:
        for event in stub.ChatStream(request, timeout=args.timeout, metadata=_metadata(args)):
            if args.json:  # one JSON object a line, as each event arrives
                print(json.dumps(json_format.MessageToDict(event), separators=(",", ":")), flush=True)
                continue
            kind = event.WhichOneof("event")
            if reasoning_shown and kind != "reasoning_delta":
                sys.stderr.write("\n")  # end the reasoning line before the answer starts
                reasoning_shown = False
            if kind == "text_delta":
                sys.stdout.write(event.text_delta.text)
                sys.stdout.flush()  # show each token as it arrives
            elif kind == "reasoning_delta" and args.show_reasoning:
                sys.stderr.write(event.reasoning_delta.text)
                sys.stderr.flush()
                reasoning_shown = True
            elif kind == "tool_call_end":
                call = event.tool_call_end.call
                sys.stdout.write(f"\n[tool call {call.name}({call.arguments_json}) id={call.id}]")
            elif kind == "finish":
                finish = event.finish
    if args.json:
        return 0
    sys.stdout.write("\n")
    if finish is not None and args.verbose:
        reason = pb.FinishReason.Name(finish.reason)
        print(
            f"[{finish.provider}/{finish.model} {reason} overhead={finish.timing.gateway_overhead_us}us]",
            file=sys.stderr,
        )
    return 0


def _print_json(message: object) -> None:
    print(json.dumps(json_format.MessageToDict(message), indent=2))  # type: ignore[arg-type]


def _models(args: argparse.Namespace) -> int:
    channel, stub = _stub(args)
    with channel:
        response = stub.ListModels(
            pb.ListModelsRequest(provider=args.provider), timeout=args.timeout, metadata=_metadata(args)
        )
    if args.json:
        _print_json(response)
        return 0
    for model in response.models:
        flags = [name for name in ("vision", "tools", "reasoning", "embeddings") if getattr(model, name)]
        aliases = f"\t(alias: {', '.join(model.aliases)})" if model.aliases else ""
        print(f"{model.provider}/{model.id}\t{model.context_window or '-'}\t{','.join(flags)}{aliases}")
    return 0


def _providers(args: argparse.Namespace) -> int:
    channel, stub = _stub(args)
    with channel:
        response = stub.ListProviders(
            pb.ListProvidersRequest(), timeout=args.timeout, metadata=_metadata(args)
        )
    if args.json:
        _print_json(response)
        return 0
    for provider in response.providers:
        health = pb.ProviderHealth.Name(provider.health).removeprefix("PROVIDER_HEALTH_")
        default = " (default)" if provider.name == response.default_provider else ""
        print(f"{provider.name}\t{provider.kind}\t{health}\t{provider.breaker_state}{default}")
    return 0


def _health(args: argparse.Namespace) -> int:
    with _channel(args) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest(service=args.service),
            timeout=args.timeout,
            metadata=_metadata(args),
        )
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(json.dumps({"status": status}) if args.json else status)
    return 0 if status == "SERVING" else 1


def _hash_key(args: argparse.Namespace) -> int:
    from provider_gateway.server.auth import MIN_KEY_LENGTH, hash_key

    key = sys.stdin.readline().strip()
    if len(key) < MIN_KEY_LENGTH:
        print(
            f"provider-gateway: a key needs at least {MIN_KEY_LENGTH} characters; "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            file=sys.stderr,
        )
        return 2
    print(hash_key(key))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="provider-gateway", description="AI providers behind one gRPC API")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway (mock provider when no --config)")
    serve.add_argument("--config", help="TOML configuration file")
    serve.add_argument("--host", help="address to listen on (default from config, else 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="port to listen on (default from config, else 50051; 0 = any)"
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="server processes sharing the port (SO_REUSEPORT): a number, or 'auto' for the usable "
        "cores (default 1)",
    )
    serve.add_argument(
        "--loop",
        default="asyncio",
        choices=["asyncio", "uvloop"],
        help="event loop (default asyncio, its tasks started eagerly)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--log-format", default="auto", choices=["auto", "json", "text"], help="auto: text on a terminal"
    )
    serve.set_defaults(func=_serve)

    commands.add_parser(
        "hash-key", help="print the sha256 of an API key read from stdin, for [[auth.keys]] in the config"
    ).set_defaults(func=_hash_key)

    def client_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)

        def from_env(flag: str, variable: str, help_text: str) -> None:
            """An option whose default is the PROVIDER_GATEWAY_* variable the clients read."""
            sub.add_argument(
                flag, default=_env(variable), help=f"{help_text} (default ${ENV_PREFIX}{variable})"
            )

        sub.add_argument(
            "--target",
            default=_env("TARGET") or DEFAULT_TARGET,
            help=f"gateway address (default ${ENV_PREFIX}TARGET, else {DEFAULT_TARGET})",
        )
        sub.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")
        # No argparse default: given on the command line, either beats both variables (_metadata).
        sub.add_argument(
            "--api-key",
            help=f"gateway API key, if the server requires one (default ${ENV_PREFIX}API_KEY); "
            "an argument shows in ps",
        )
        sub.add_argument(
            "--api-key-file",
            help=f"read the gateway API key from this file (default ${ENV_PREFIX}API_KEY_FILE)",
        )
        sub.add_argument(
            "--tls",
            action=argparse.BooleanOptionalAction,  # --no-tls overrides the variable
            default=(_env("TLS") or "").lower() in TRUE_WORDS,
            help=f"connect with TLS, trusting the system's CAs (default ${ENV_PREFIX}TLS)",
        )
        from_env("--ca-file", "CA_FILE", "PEM CA bundle to trust, implies --tls")
        from_env("--cert-file", "CERT_FILE", "PEM client certificate, for mutual TLS with --key-file")
        from_env("--key-file", "KEY_FILE", "PEM private key of --cert-file")
        sub.add_argument(
            "--server-name", help="the name the server's certificate must carry, if not the target's"
        )
        return sub

    chat = client_command("chat", "stream a chat answer to the terminal")
    chat.add_argument("prompt", nargs="+", help="what to ask")
    chat.add_argument("--model", "-m", default="mock/echo", help="model, alias or provider/model")
    chat.add_argument("--system", default="", help="system prompt")
    chat.add_argument("--max-tokens", type=int, default=0)
    chat.add_argument("--show-reasoning", action="store_true", help="print reasoning to stderr")
    chat.add_argument("--verbose", "-v", action="store_true", help="print who answered and the overhead")
    chat.add_argument("--json", action="store_true", help="print each stream event as one line of JSON")
    chat.set_defaults(func=_chat)

    models = client_command("models", "list models, with their aliases")
    models.add_argument("--provider", default="", help="only this provider's models")
    models.add_argument("--json", action="store_true", help="print the answer as JSON")
    models.set_defaults(func=_models)

    providers = client_command("providers", "list providers with health")
    providers.add_argument("--json", action="store_true", help="print the answer as JSON")
    providers.set_defaults(func=_providers)

    health = client_command("health", "check the standard gRPC health service")
    health.add_argument("--service", default="", help="entry to check ('' = whole server, provider/<name>)")
    health.add_argument("--json", action="store_true", help='print {"status": ...} as JSON')
    health.set_defaults(func=_health)
    add_fake_upstream(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except grpc.RpcError as exc:
        print(f"provider-gateway: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
