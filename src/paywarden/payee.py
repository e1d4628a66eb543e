"""The payee: every recipient parsed once into one typed, canonical identity.

An agent may spell one payee many ways (`EVIL.com.`, `https://evil.com:443/`, `evil.com/pay`,
`//evil.com`, `http:evil.com`, `ｅｖｉｌ.ｃｏｍ`). Whatever it sends is parsed here, once, into a
`Payee`, and that value, nothing else, is what policy rules, grants, budget and velocity
counters, approval and idempotency fingerprints, the audit record and the rail see.

Kinds and their identities:

| kind | examples | identity | case |
| --- | --- | --- | --- |
| `url` | `https://api.example.com/v1`, `evil.com/pay`, `evil.com:8443` | the host | folded |
| `domain` | `vendor.example.com`, `bücher.de` | the host (IDNA) | folded |
| `ip` | `10.0.0.1`, `0x7f.1`, `[::1]`, `2001:db8::1` | the canonical address | - |
| `email` | `billing@acme.com` | the whole address | folded |
| `address` | `0x52908400098527886E0F7030069857D2E4169EE7`, `bc1q...` | the address | one case |
| `account` | `acct_1AbC`, `cus_9x` (rail account ids) | the id as sent | kept |
| `id` | `vendor-42`, `7Xf...base58` | the id as sent | kept |

URLs and hosts are parsed by a WHATWG URL parser (`ada-url`, the parser of Node.js), so a host
is the host a browser or HTTP client reaches: IDNA (UTS #46), percent-decoding, IPv4 in every
`inet_aton` notation. A recipient with no scheme that looks like `host[:port][/path]` or
`//host...` is read as if `https://` stood before it. A URL payee's identity is its host; its
canonical text adds scheme, port and path (query and fragment are dropped: they do not say who
is paid). Userinfo (`user@host` in a URL) is refused. Only `http` and `https` URLs are payees.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import Final, Literal

import ada_url

from paywarden import limits
from paywarden.audit.redact import DEFAULT_REDACTOR, REDACTED
from paywarden.errors import InvalidRecipientError

PayeeKind = Literal["url", "domain", "ip", "email", "address", "account", "id"]
PAYEE_KINDS: Final[tuple[PayeeKind, ...]] = (
    "url",
    "domain",
    "ip",
    "email",
    "address",
    "account",
    "id",
)
CASE_SENSITIVE_KINDS: Final = frozenset({"account", "id"})

# UTS #46 label separators that NFKC leaves alone; the URL parser maps them, but only after our
# own checks have looked at the text, so they are mapped first.
_IDEOGRAPHIC_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_WHITESPACE_RUN = re.compile(r"\s+")
_SCHEME = re.compile(r"\A([A-Za-z][A-Za-z0-9+.-]*):")
_HTTP_SCHEMES = frozenset({"http", "https"})
# WHATWG "special" schemes a client would treat as a network URL; only http(s) pay.
_OTHER_SPECIAL_SCHEMES = frozenset({"ws", "wss", "ftp", "file"})
# `host:port`, `host:port/path`, `host:` (the port may be empty, as in WHATWG).
_HOST_PORT = re.compile(r"\A[^\s/\\:@?#\[\]]+:[0-9]*(?:[/\\?#].*)?\Z", re.S)
# `host/path`, `host?query`, `host#frag`, `host\path` with a host-looking head.
_HOST_PATH = re.compile(r"\A[A-Za-z0-9._~%!$&'()*+,;=\x80-\U0010ffff-]+[/\\?#]", re.S)
_HOST_LABEL = re.compile(r"\A[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_EVM_ADDRESS = re.compile(r"\A0[xX]([0-9a-fA-F]{40})\Z")
_CAIP10_EVM = re.compile(r"\A(eip155):([0-9]{1,32}):0[xX]([0-9a-fA-F]{40})\Z", re.IGNORECASE)
_BECH32 = re.compile(r"\A(bc|tb|bcrt|ltc|tltc)1[02-9ac-hj-np-z]{6,87}\Z", re.IGNORECASE)
_ACCOUNT = re.compile(r"\A(acct|cus|pm|ba|card|src|la|ca)_[A-Za-z0-9]{1,255}\Z")
_EMAIL_LOCAL = re.compile(r"\A[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}\Z")
# Printable ASCII, spaces inside; no wildcard characters, so a payee never reads as a pattern.
_ID_TEXT = re.compile(r"\A(?![^*?\[\]]*[*?\[\]])[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?\Z")
HOST_CHARS_MAX: Final = 253


@dataclass(frozen=True, slots=True)
class Payee:
    """One payee in canonical form.

    `identity` is who is paid: the one value that host and id rules, grants and per-recipient
    counters compare. `text` is the canonical whole (for a URL: scheme, host, port and path;
    otherwise the identity), which fingerprints, the audit record and the rail receive. `host`
    is the domain or IP literal money is sent to, when there is one (URL, domain, IP, and the
    domain of an e-mail address).
    """

    kind: PayeeKind
    identity: str
    text: str
    host: str | None = None
    port: int | None = None
    path: str | None = None
    scheme: str | None = None  # `http` or `https`, for a URL

    def __str__(self) -> str:
        return self.text

    @property
    def case_sensitive(self) -> bool:
        """Whether the identity keeps the exact case it was sent in (rail ids, opaque ids)."""
        return self.kind in CASE_SENSITIVE_KINDS

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"kind": self.kind, "identity": self.identity, "text": self.text}
        if self.host is not None:
            data["host"] = self.host
        if self.port is not None:
            data["port"] = self.port
        return data


def parse_payee(value: object) -> Payee:
    """Parse a recipient into its canonical `Payee`, or raise `InvalidRecipientError`.

    Parsing a payee's own `text` again gives the same payee.
    """
    if isinstance(value, Payee):
        return value
    text = prepare(value, "recipient")
    try:
        return _classify(text)
    except InvalidRecipientError as error:
        raise InvalidRecipientError(_without_secrets(str(error), text)) from None


def _without_secrets(message: str, text: str) -> str:
    """An error message that quotes the recipient, with any secret in it (user information, a
    key in a query) removed: messages are shown, logged and may be stored."""
    safe, _ = DEFAULT_REDACTOR.redact_url(text)
    if DEFAULT_REDACTOR.secret_kind(safe) is not None:
        safe = REDACTED
    message = message.replace(text, safe) if safe != text else message
    if DEFAULT_REDACTOR.secret_kind(message) is not None:
        return "recipient is not a valid payee (its text is withheld: it carries a secret)"
    return message


def prepare(value: object, field: str) -> str:
    """The text after the checks every spelling gets: a string of bounded size with no
    invisible or control characters, in NFKC, ideographic dots as dots, trimmed."""
    if not isinstance(value, str):
        raise InvalidRecipientError(f"{field} must be a string, not {type(value).__name__}")
    if len(value.encode("utf-8", "surrogatepass")) > limits.recipient_bytes_max:
        raise InvalidRecipientError(f"{field} is longer than {limits.recipient_bytes_max} bytes")
    reject_invisible(field, value)
    text = unicodedata.normalize("NFKC", value).translate(_IDEOGRAPHIC_DOTS)
    text = _WHITESPACE_RUN.sub(" ", text).strip()
    if not text:
        raise InvalidRecipientError(f"{field} must not be empty")
    return text


def reject_invisible(field: str, text: str, *, line_breaks: bool = False) -> None:
    """Refuse control, format (bidi, zero-width), private-use, unassigned characters and lone
    surrogates: text a human reads must be the text a machine compares. Free text may allow
    line breaks and tabs (`line_breaks=True`); identities never do (URL parsers drop them)."""
    allowed = "\t\n\r" if line_breaks else ""
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Cs", "Co", "Cn") and char not in allowed:
            raise InvalidRecipientError(
                f"{field} contains the invisible or control character U+{ord(char):04X}"
            )


def _classify(text: str) -> Payee:
    if text.lower().startswith("mailto:"):
        return _email(text[len("mailto:") :], text)
    if text.startswith(("//", "\\\\")):
        return _url("https:" + text, text)
    scheme_match = _SCHEME.match(text)
    scheme = scheme_match.group(1).lower() if scheme_match else None
    if scheme in _HTTP_SCHEMES:
        return _url(text, text)
    if scheme in _OTHER_SPECIAL_SCHEMES or "://" in text:
        raise InvalidRecipientError(
            f"recipient `{text}` is a `{scheme or 'non-http'}` URL; only http and https URLs "
            "can be payees"
        )
    if "@" in text:
        if any(char in text for char in "/\\:?#"):
            raise InvalidRecipientError(
                f"recipient `{text}` mixes an e-mail address and a URL; a URL payee may not "
                "carry user information (`user@host`)"
            )
        return _email(text, text)
    if text.startswith("["):
        if text.endswith("]"):
            return _domain_or_ip(text, text)
        return _url("https://" + text, text)
    caip = _CAIP10_EVM.match(text)
    if caip is not None:
        canonical = f"eip155:{caip.group(2)}:{_evm_address(caip.group(3), text)}"
        return Payee("address", canonical, canonical)
    if _HOST_PORT.match(text) or _HOST_PATH.match(text):
        return _url("https://" + text, text)
    if text.count(":") >= 2 and _looks_ipv6(text):
        return _ipv6(text)
    return _plain(text)


def _url(url: str, original: str) -> Payee:
    try:
        parts = ada_url.parse_url(url)
    except ValueError:
        raise InvalidRecipientError(_url_problem(url, original)) from None
    scheme = parts["protocol"].rstrip(":")
    if scheme not in _HTTP_SCHEMES:
        raise InvalidRecipientError(
            f"recipient `{original}` is a `{scheme}:` URL; only http and https URLs can be payees"
        )
    if parts["username"] or parts["password"]:
        raise InvalidRecipientError(
            f"recipient `{original}` carries user information (`user@host`); a payee URL names "
            "a host, never credentials"
        )
    host, kind = _host_of(parts["hostname"], int(parts["host_type"]), original)
    port = int(parts["port"]) if parts["port"] else None
    path = parts["pathname"] or "/"
    netloc = f"{host}:{port}" if port is not None else host
    text = f"{scheme}://{netloc}{path}"
    if len(text.encode("utf-8")) > limits.recipient_bytes_max * 2:
        raise InvalidRecipientError(f"recipient `{original}` is too long once canonical")
    del kind  # an IP or a domain host: either way the identity is the host
    return Payee("url", host, text, host, port, path, scheme)


def _url_problem(url: str, original: str) -> str:
    """Why the URL parser refused `url`, in words (it says only "Invalid URL")."""
    authority = re.split(r"[/\\?#]", url.split("//", 1)[-1], maxsplit=1)[0]
    host_port = authority.rsplit("@", 1)[-1]
    if not host_port.startswith("[") and ":" in host_port:
        port = host_port.rsplit(":", 1)[1]
        if not port.isdigit() or int(port) > 65535:
            return f"recipient URL `{original}` has an invalid port `{port}`"
    if not host_port.strip(":"):
        return f"recipient URL `{original}` has no host"
    return f"recipient `{original}` is not a valid URL: its host cannot be parsed"


def _host_of(hostname: str, host_type: int, original: str) -> tuple[str, PayeeKind]:
    """The canonical host of a parsed URL: a domain without its trailing dot, a dotted IPv4
    address, or a bracketed IPv6 address (IPv4-mapped ones as IPv4)."""
    if host_type == 1:
        return hostname, "ip"
    if host_type == 2:
        address = ipaddress.IPv6Address(hostname.strip("[]"))
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped), "ip"
        return f"[{address.compressed}]", "ip"
    domain = hostname[:-1] if hostname.endswith(".") else hostname
    _check_domain(domain, original)
    return domain, "domain"


def _check_domain(domain: str, original: str) -> None:
    if not domain or len(domain) > HOST_CHARS_MAX:
        raise InvalidRecipientError(f"recipient `{original}` has no valid host name")
    for label in domain.split("."):
        if not _HOST_LABEL.match(label):
            raise InvalidRecipientError(
                f"recipient `{original}` has an invalid host name label `{label}`: labels are "
                "1 to 63 letters, digits, `-` or `_`"
            )
        if label.startswith("xn--") and not _punycode_ok(label):
            raise InvalidRecipientError(
                f"recipient `{original}` has an invalid IDNA label `{label}`"
            )


def _punycode_ok(label: str) -> bool:
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError):
        return False
    return bool(decoded) and not decoded.isascii()


def _domain_or_ip(text: str, original: str) -> Payee:
    """A bare host: parsed as the host of `https://<text>/`, when it is only a host."""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if any(char in bare for char in "/\\?#@[]") or (":" in bare and bare is text):
        raise InvalidRecipientError(f"recipient `{original}` is not a valid host name")
    try:
        parts = ada_url.parse_url(f"https://{text}/")
    except ValueError:
        raise InvalidRecipientError(
            f"recipient `{original}` looks like a host name but is not a valid one"
        ) from None
    if parts["pathname"] != "/" or parts["port"] or parts["username"] or parts["search"]:
        raise InvalidRecipientError(f"recipient `{original}` is not a valid host name")
    host, kind = _host_of(parts["hostname"], int(parts["host_type"]), original)
    return Payee(kind, host, host, host)


def _email(text: str, original: str) -> Payee:
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise InvalidRecipientError(f"recipient `{original}` is not an e-mail address")
    if not _EMAIL_LOCAL.match(local) or local.startswith(".") or ".." in local:
        raise InvalidRecipientError(
            f"recipient `{original}` has an invalid mailbox name `{local}` (ASCII letters, "
            "digits and . ! # $ % & ' * + / = ? ^ _ ` { | } ~ -)"
        )
    host = _domain_or_ip(domain, original)
    if host.kind != "domain":
        raise InvalidRecipientError(f"recipient `{original}`: an e-mail domain must be a name")
    identity = f"{local.casefold()}@{host.identity}"
    return Payee("email", identity, identity, host.identity)


def _looks_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _ipv6(text: str) -> Payee:
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise InvalidRecipientError(f"recipient `{text}` is not a valid IPv6 address") from None
    if address.scope_id:
        raise InvalidRecipientError(f"recipient `{text}` names a link-local zone; not a payee")
    if address.ipv4_mapped is not None:
        host = str(address.ipv4_mapped)
    else:
        host = f"[{address.compressed}]"
    return Payee("ip", host, host, host)


def _evm_address(hex_digits: str, original: str) -> str:
    """An EVM address in one case, after checking an EIP-55 checksum when it is mixed-case."""
    mixed = hex_digits not in (hex_digits.lower(), hex_digits.upper())
    if mixed and eip55(hex_digits) != hex_digits:
        raise InvalidRecipientError(
            f"recipient `{original}` is a mixed-case address whose EIP-55 checksum is wrong "
            "(a mistyped address?)"
        )
    return "0x" + hex_digits.lower()


def eip55(hex_digits: str) -> str:
    """The EIP-55 checksummed spelling of 40 hex digits (without `0x`)."""
    from Crypto.Hash import keccak  # imported here: only mixed-case addresses need it

    lower = hex_digits.lower()
    digest = keccak.new(digest_bits=256, data=lower.encode("ascii")).hexdigest()
    return "".join(
        char.upper() if char.isalpha() and int(digest[index], 16) >= 8 else char
        for index, char in enumerate(lower)
    )


def _plain(text: str) -> Payee:
    evm = _EVM_ADDRESS.match(text)
    if evm is not None:
        address = _evm_address(evm.group(1), text)
        return Payee("address", address, address)
    if _BECH32.match(text):
        if text != text.lower() and text != text.upper():
            raise InvalidRecipientError(
                f"recipient `{text}` mixes upper and lower case, which a bech32 address cannot"
            )
        address = text.lower()
        return Payee("address", address, address)
    stripped = text.rstrip(". ")
    if not stripped:
        raise InvalidRecipientError(f"recipient `{text}` has no name, only dots")
    if stripped != text:
        return _classify(stripped)  # `host:.` is `host:`: the trailing dots said nothing
    if "." in stripped and " " not in stripped:
        return _domain_or_ip(stripped, text)
    if not _ID_TEXT.match(stripped):
        raise InvalidRecipientError(
            f"recipient `{text}` is not a host, URL, e-mail or address, and an account id must "
            "be printable ASCII without `*`, `?`, `[` or `]`"
        )
    kind: PayeeKind = "account" if _ACCOUNT.match(stripped) else "id"
    return Payee(kind, stripped, stripped)
