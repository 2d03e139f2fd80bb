"""Where a group's credentials come from: the config, a credentials file, or the environment.

Per key, in order: `credentials` in the config (or, instead, `credentials_file`), then the provider's
usual environment variable (the names: its descriptor's credential_keys, providers/*_service.py).
The session token is an exception: one from the config or file is always used, but one from the
environment only together with a secret from the environment, because a
temporary token belongs to the temporary secret issued with it (pairing a long-term secret from the
config with a stray token in the environment would make every signature fail).

`credentials_file` is read through `read_credentials_file`, which the runtime calls again to pick up
rotated credentials.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any

from shardbeat.config.files import parse_json, read_text
from shardbeat.config.model import ConfigError, GroupConfig, Problem, ProviderName
from shardbeat.providers.base import Credentials
from shardbeat.providers.services import service

MAX_CREDENTIALS_BYTES = 64 * 1024


def read_credentials_file(
    path: str, provider: ProviderName, where: str = "credentials_file"
) -> tuple[dict[str, str], list[Problem]]:
    """-> (the file's credential values, warnings). Raises ConfigError with problems at `where`."""
    try:
        text = read_text(path, "credentials file", MAX_CREDENTIALS_BYTES)
        document = parse_json(text, path, "credentials file")
    except ConfigError as exc:
        # Report at the config path that names the file; the message keeps the file name.
        raise ConfigError([Problem(where, f"{p.path}: {p.message}") for p in exc.problems]) from None
    keys = service(provider).credential_keys
    if not isinstance(document, dict):
        raise ConfigError([Problem(where, f"{path}: must hold a JSON object with {', '.join(keys.names)}")])
    problems: list[Problem] = []
    values: dict[str, str] = {}
    for key, value in document.items():
        if key not in keys.names:
            # The key after " (": the kind problem_summary counts (5,000 unknown keys: a few lines).
            expected = ", ".join(keys.names)
            problems.append(Problem(where, f"{path}: unknown key ({key!r}); expected {expected}"))
        elif not isinstance(value, str) or not value:
            problems.append(Problem(where, f"{path}: {key} must be a non-empty string"))
        else:
            values[key] = value
    if problems:
        raise ConfigError(problems)
    warnings: list[Problem] = []
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(
            Problem(where, f"{path} is accessible to other users (mode {stat.S_IMODE(mode):o}); chmod 600 it")
        )
    return values, warnings


def resolve(
    provider: ProviderName,
    given: Mapping[str, Any],
    environ: Mapping[str, str],
    where: str,
    from_file: str | None = None,
) -> tuple[Credentials | None, list[Problem]]:
    """Combine `given` (config or file values) with the environment; problems for missing keys."""
    keys = service(provider).credential_keys

    def missing(key: str) -> str:
        env = keys.env_for(key)
        if from_file:
            return f"missing: not in {from_file}, and {env} is not set"
        return f"missing: set {env}, or give it under credentials or in a credentials_file"

    def pick(key: str) -> tuple[str | None, bool]:
        """-> (value, came from the environment). A present but invalid value is the schema's to report."""
        if key in given:
            value = given[key]
            return (value if isinstance(value, str) and value else None), False
        found = environ.get(keys.env_for(key)) or None
        return found, found is not None

    key_id, key_id_from_env = pick(keys.key_id)
    secret, secret_from_env = pick(keys.secret)
    problems = [
        Problem(f"{where}.{key}", missing(key))
        for key, value in ((keys.key_id, key_id), (keys.secret, secret))
        if value is None and key not in given
    ]
    token = given.get(keys.token)
    token_from_env = False
    if not (isinstance(token, str) and token):
        token = (environ.get(keys.token_env) or None) if secret_from_env else None
        token_from_env = token is not None
    for key, value, from_env in (
        (keys.key_id, key_id, key_id_from_env),
        (keys.secret, secret, secret_from_env),
        (keys.token, token, token_from_env),
    ):
        flaw = credential_flaw(value)
        if flaw is not None:
            origin = f"{keys.env_for(key)} (for {key})" if from_env else key
            origin += f" in {from_file}" if from_file and not from_env else ""
            problems.append(Problem(f"{where}.{key}", f"{origin} {flaw}"))
    if key_id is None or secret is None or any(p.path.startswith(f"{where}.") for p in problems):
        return None, problems
    return Credentials(key_id, secret, token), problems


def credential_flaw(value: str | None) -> str | None:
    """Why `value` cannot be sent as a credential, never quoting it; None when it can.

    Credentials travel in HTTP headers and signatures: a control character (the trailing newline of
    `echo` or `$(cat)`, a \r from a Windows editor) makes the request fail with an error that quotes
    the header, and surrounding spaces would be stripped by the server and break the signature. Both
    are refused at load (exit 2) rather than repaired: a silently changed secret is worse. Keys and
    tokens of both services are ASCII, so anything else is a copy-paste accident too.
    """
    if value is None:
        return None
    bad = next((c for c in value if c < " " or c == "\x7f"), None)
    if bad is not None:
        what = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}.get(
            bad, f"control character {ord(bad):#04x}"
        )
        return f"contains {what} (e.g. a trailing newline from echo or a file); remove it"
    if value != value.strip():
        return "has leading or trailing whitespace; remove it"
    if not value.isascii():
        return "contains a non-ASCII character (keys and tokens are ASCII); check the value"
    return None


def reload_credentials(group: GroupConfig, environ: Mapping[str, str] | None = None) -> Credentials:
    """Credentials for `group` as they are now: re-reads its credentials_file (rotation).

    Without a credentials file, the loaded credentials are returned unchanged. Raises ConfigError.
    """
    if group.credentials_file is None:
        if group.credentials is None:
            raise ConfigError(
                [Problem("credentials", f"{group.label} takes its keys from a credential source")]
            )
        return group.credentials
    values, _ = read_credentials_file(group.credentials_file, group.provider)
    found, problems = resolve(
        group.provider,
        values,
        os.environ if environ is None else environ,
        "credentials",
        from_file=group.credentials_file,
    )
    if found is None:
        raise ConfigError(problems)
    return found
