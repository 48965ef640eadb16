"""What gitxp keeps out of the records because it looks like a secret.

One home for the rule "does this name look secret" and the masks built on
it: environment variables (``environment.yaml``), options of the wrapped
command line (``experiment.yaml``'s ``command``, the commit message, the
listing cache), credentials inside URLs, and exact secret strings (the
artifact key) in captured output and every recorded text.

A name looks secret when one of its *components* is a secret word. Names
are split at ``_``, ``-``, ``.`` and camelCase boundaries, so ``DS_API_PW``,
``TF_VAR_db_pass``, ``HF_ACCESS_PAT`` and ``--apiKey`` match while
``PATH``, ``PYTHONPATH``, ``KEYBOARD`` or ``--max-tokens`` do not. A few
compound words (``APIKEY``, ``AUTHTOKEN``, ``PASSPHRASE``) match at the end
of a component. Tokenizer options such as ``--pad-token`` or ``eos_token``
name a vocabulary entry, not a credential, and are not masked.

This file is also run by path in another interpreter (through
:mod:`gitxp.environment.capture`), so it imports only the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["REDACTED", "StreamMasker", "looks_secret", "mask_argv", "mask_text", "mask_url", "secret_values"]

REDACTED = "<redacted>"

#: Components that are secret words by themselves.
SECRET_WORDS = frozenset({
    "KEY", "TOKEN", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASS", "PW", "PWD", "PAT",
    "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTH", "PRIVATE", "COOKIE", "SESSION", "SIGNATURE",
    "CERT", "PASSPHRASE", "APIKEY",
})
#: Components ending in one of these are secret too (``HFTOKEN``, ``DBPASSWORD``, ``SECRETKEY``).
_SECRET_ENDINGS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "CREDENTIALS", "APIKEY",
                   "ACCESSKEY", "SECRETKEY", "PRIVATEKEY")
#: ``TOKEN`` after one of these is a tokenizer's special token, not a credential.
_VOCABULARY = frozenset({"PAD", "BOS", "EOS", "UNK", "SEP", "CLS", "MASK", "START", "END", "SPECIAL", "ADDITIONAL"})

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[^A-Za-z0-9]+")
#: ``scheme://userinfo@`` — the userinfo (``user:token``, or a bare token) is masked.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#@\s]+)@")
#: ``?token=…`` / ``&api_key=…`` in a URL.
_URL_QUERY = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&#;\s]+)=(?P<value>[^&#;\s]*)")


def _components(name: str) -> list[str]:
    return [c.upper() for c in _SPLIT.split(_CAMEL.sub("_", name)) if c]


def looks_secret(name: str) -> bool:
    """True when a variable or option name looks like it holds a secret.

    >>> [looks_secret(n) for n in ("HF_TOKEN", "DS_API_PW", "--api-key", "PYTHONPATH", "--pad-token")]
    [True, True, True, False, False]
    """
    parts = _components(name)
    for i, part in enumerate(parts):
        if part == "TOKEN" and i and parts[i - 1] in _VOCABULARY:
            continue
        if part in SECRET_WORDS or (len(part) > 5 and part.endswith(_SECRET_ENDINGS)):
            return True
    return False


def mask_url(text: str) -> str:
    """Mask credentials in every URL inside ``text``.

    ``https://user:token@host/x`` → ``https://<redacted>@host/x`` (a bare
    token as the user is as secret as a password), and the value of a
    secret-looking query parameter (``?access_token=…``) is masked.
    """
    if "://" not in text:
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    if "=" in text:
        text = _URL_QUERY.sub(
            lambda m: f"{m['sep']}{m['name']}={REDACTED}" if looks_secret(m["name"]) and m["value"] else m[0], text)
    return text


def mask_argv(argv: Sequence[str]) -> list[str]:
    """A command line as it may be recorded: secret option values masked.

    ``--api-key X``, ``--password=X``, ``-token X`` and ``db.password=X``
    (Hydra-style overrides) keep their name and lose their value; URLs lose
    their credentials. The command that runs is never changed, only what
    is written down.
    """
    out: list[str] = []
    mask_next = False
    for arg in map(str, argv):
        if mask_next:
            mask_next = False
            if not arg.startswith("-") or arg == "-":
                out.append(REDACTED)
                continue
        if arg.startswith("-") and len(arg) > 1 and arg != "--":
            name, eq, value = arg.lstrip("-").partition("=")
            if looks_secret(name):
                if eq:
                    out.append(arg[: len(arg) - len(value)] + REDACTED)
                    continue
                mask_next = not name.upper().startswith(("NO-", "NO_"))
                out.append(arg)
                continue
        elif "=" in arg and not arg.startswith(("=", "/")):
            name, _, value = arg.partition("=")
            if re.fullmatch(r"[+~]{0,2}[A-Za-z_][\w.\-/]*", name) and looks_secret(name.rsplit(".", 1)[-1]):
                out.append(f"{name}={REDACTED}")
                continue
        out.append(mask_url(arg))
    return out


#: A masked option value shorter than this is not hunted for in output: masking every ``1`` would garble it.
MIN_SECRET_CHARS = 6


def secret_values(argv: Sequence[str]) -> list[str]:
    """The values :func:`mask_argv` hides, to mask them in the command's output too.

    A script that prints its arguments (argparse's ``print(args)``) would
    otherwise record ``--api-key``'s value in ``output.log``. Values shorter
    than :data:`MIN_SECRET_CHARS` are left out.
    """
    argv = [str(a) for a in argv]
    found = []
    for raw, masked in zip(argv, mask_argv(argv)):
        if raw == masked:
            continue
        for part in _hidden(raw, masked):
            if len(part) >= MIN_SECRET_CHARS and part not in found:
                found.append(part)
    return found


def _hidden(raw: str, masked: str) -> list[str]:
    """The pieces of ``raw`` that ``masked`` shows as ``<redacted>``."""
    pattern = "(.*?)".join(re.escape(piece) for piece in masked.split(REDACTED))
    m = re.fullmatch(pattern, raw, re.DOTALL)
    return [g for g in m.groups() if g] if m else []


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``<redacted>``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


class StreamMasker:
    """Masks exact secrets in a byte stream cut into arbitrary chunks.

    A chunk may end in the middle of a secret, so the longest tail that
    could still grow into one is held back until the next chunk (or
    :meth:`flush` at the end). Only a tail that is a prefix of a secret is
    held, so ordinary output goes through at once.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)
        self._held = b""

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def feed(self, data: bytes) -> bytes:
        """The masked bytes that are safe to write now."""
        if not self._secrets:
            return data
        buf = self._held + data
        for secret in self._secrets:
            buf = buf.replace(secret, REDACTED.encode())
        keep = 0
        for secret in self._secrets:
            for n in range(min(len(secret) - 1, len(buf)), keep, -1):
                if buf.endswith(secret[:n]):
                    keep = n
                    break
        self._held = buf[len(buf) - keep:] if keep else b""
        return buf[: len(buf) - keep] if keep else buf

    def flush(self) -> bytes:
        """What was held back; the stream has ended."""
        held, self._held = self._held, b""
        return held
