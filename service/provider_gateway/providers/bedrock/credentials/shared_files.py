"""The shared credentials and config files (`~/.aws/credentials`, `~/.aws/config`) and the profile.

Read once, off the event loop, when the chain first needs them. The profile is the `profile`
option, else AWS_PROFILE, else AWS_DEFAULT_PROFILE, else `default`; the files are
AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE when set. As in botocore, the config file names
profiles `[profile NAME]` (`[default]` alone), the credentials file `[NAME]`, and a key in the
credentials file wins over the same key in the config file.
"""

from __future__ import annotations

import asyncio
import configparser
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from provider_gateway.errors import ErrorKind
from provider_gateway.providers.bedrock.credentials.model import AwsCredentials, credentials_error, issued

# Profile keys that only botocore can act on, and the feature each one means.
BOTOCORE_FEATURES = {
    "sso_session": "SSO",
    "sso_start_url": "SSO",
    "credential_process": "credential_process",
}


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    explicit: bool  # named by the option or AWS_PROFILE (an unknown name is then an error)
    from_credentials_file: dict[str, str] = field(default_factory=dict)
    from_config_file: dict[str, str] = field(default_factory=dict)

    @property
    def merged(self) -> dict[str, str]:
        return {**self.from_config_file, **self.from_credentials_file}

    @property
    def assumes_role(self) -> bool:
        """An assume-role chain (`role_arn` with `source_profile` or `credential_source`)."""
        keys = self.merged
        return "role_arn" in keys and "web_identity_token_file" not in keys

    def botocore_feature(self) -> str:
        """What this profile needs botocore for ("" when nothing): assume-role, SSO, credential_process."""
        if self.assumes_role:
            return "assume-role"
        return next((what for key, what in BOTOCORE_FEATURES.items() if key in self.merged), "")


def profile_name(option: str, env: Mapping[str, str]) -> tuple[str, bool]:
    name = option or env.get("AWS_PROFILE", "") or env.get("AWS_DEFAULT_PROFILE", "")
    return (name, True) if name else ("default", False)


def file_paths(env: Mapping[str, str]) -> tuple[Path, Path]:
    def expand(value: str) -> Path:
        home = env.get("HOME")
        if value.startswith("~") and home:
            return Path(home + value[1:])
        return Path(value).expanduser()

    return (
        expand(env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"),
        expand(env.get("AWS_CONFIG_FILE") or "~/.aws/config"),
    )


def _sections(path: Path) -> dict[str, dict[str, str]]:
    parser = configparser.RawConfigParser()
    try:
        with path.open(encoding="utf-8") as file:
            parser.read_file(file)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise credentials_error(ErrorKind.UNAUTHENTICATED, f"cannot read {path}: {error}") from None
    except configparser.Error as error:
        # configparser's message quotes the offending line, which may hold a key: say where only.
        where = getattr(error, "lineno", None)
        line = f" (line {where})" if where else ""
        raise credentials_error(ErrorKind.UNAUTHENTICATED, f"{path} is not a valid INI file{line}") from None
    return {name.strip(): {k.strip(): v.strip() for k, v in parser.items(name)} for name in parser.sections()}


def read_profile(name: str, explicit: bool, credentials_path: Path, config_path: Path) -> Profile:
    """Blocking: run it off the loop (SharedFiles does)."""
    credentials = _sections(credentials_path)
    config: dict[str, dict[str, str]] = {}
    for section, values in _sections(config_path).items():
        if section == "default" or section == "profile default":
            config.setdefault("default", {}).update(values)
        elif section.startswith("profile "):
            config[section.removeprefix("profile ").strip()] = values
    if explicit and name not in credentials and name not in config:
        raise credentials_error(
            ErrorKind.UNAUTHENTICATED,
            f"profile {name!r} is in neither {credentials_path} nor {config_path}; "
            "fix `profile` / AWS_PROFILE or the files (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE)",
        )
    return Profile(name, explicit, credentials.get(name, {}), config.get(name, {}))


class SharedFiles:
    """The chosen profile, read once and shared by the sources that need it."""

    def __init__(self, option: str, env: Mapping[str, str]) -> None:
        self.name, self.explicit = profile_name(option, env)
        self.credentials_path, self.config_path = file_paths(env)
        self._profile: Profile | None = None

    async def profile(self) -> Profile:
        if self._profile is None:
            self._profile = await asyncio.to_thread(
                read_profile, self.name, self.explicit, self.credentials_path, self.config_path
            )
        return self._profile


def static_keys(values: Mapping[str, str], where: str) -> AwsCredentials | None:
    key_id, secret = values.get("aws_access_key_id", ""), values.get("aws_secret_access_key", "")
    if not key_id and not secret:
        return None
    if not key_id or not secret:
        missing = "aws_secret_access_key" if key_id else "aws_access_key_id"
        raise credentials_error(
            ErrorKind.UNAUTHENTICATED, f"{where} lacks {missing}; set both keys, or neither"
        )
    return issued(key_id, secret, values.get("aws_session_token") or values.get("aws_security_token"), None)


class ProfileKeysSource:
    """Keys in the profile of one shared file: the credentials file, or (later in the chain) the config file."""

    def __init__(self, files: SharedFiles, *, config_file: bool) -> None:
        self.files = files
        self.config_file = config_file
        self.name = "the shared config file" if config_file else "the shared credentials file"

    async def load(self) -> AwsCredentials | None:
        profile = await self.files.profile()
        if self.config_file:
            values, path = profile.from_config_file, self.files.config_path
        else:
            values, path = profile.from_credentials_file, self.files.credentials_path
        return static_keys(values, f"profile {profile.name!r} of {path}")
