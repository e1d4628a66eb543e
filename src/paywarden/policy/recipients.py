"""Recipient patterns: how policy rules and grants name payees, and how a payee is matched.

A pattern is parsed with the same parser as a payee (`paywarden.payee`), so every spelling of
one payee matches the same patterns. What a pattern is decides what it is compared with:

- a URL (`https://api.example.com/*`, `api.example.com/v1/*`): a URL payee's canonical text;
- a CIDR block (`10.0.0.0/8`, `2001:db8::/32`): the IP address of a URL or IP payee;
- an e-mail address or glob (`*@acme.com`): an e-mail payee;
- a host name or glob (`vendor.example.com`, `*.evil.com`, `10.0.0.*`): the host of a URL,
  domain, IP or e-mail payee;
- anything else (`acct_1AbC`, `vendor-*`): the identity of an account, id or address payee,
  with its case; also hosts, when written in lower case.

Case: host names and e-mail addresses fold case. Account ids, opaque ids and base58 addresses
keep theirs: `acct_1AbC` names one payee and `acct_1aBc` another. Rules that can only make a
decision stricter (deny and require_approval rules with a positive list, allow rules with a
`_not` list) compare those ids ignoring case, so changing case never escapes a deny list;
allow lists and grants compare them exactly, so changing case never joins an allow list.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import ada_url

from paywarden import limits
from paywarden.errors import InvalidRecipientError
from paywarden.payee import Payee, parse_payee, prepare

GLOB_CHARS = "*?["
# A bracketed IPv6 host (`[::1]`, `https://[2001:db8::1]:8443/`) is not a glob character class.
_IPV6_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]*\]")
_CIDR = re.compile(r"\A\[?([0-9A-Fa-f:.]+)\]?/([0-9]{1,3})\Z")
_URL_GLOB = re.compile(r"\A(?:([A-Za-z][A-Za-z0-9+.-]*):)?//([^/\\?#]*)(.*)\Z", re.S)
_PORT = re.compile(r"\A(.*?)(:[0-9*?\[\]!-]*)?\Z", re.S)
_HOST_PORT_GLOB = re.compile(r"\A[^\s/\\:@\[\]]+:[0-9*?\[\]!-]*\Z")
_ADDRESS_LIKE = re.compile(r"\A(?:eip155:[0-9*?]*:)?0[xX][0-9A-Fa-f*?\[\]!-]*\Z")


class PatternSet:
    """Exact values in a frozenset plus glob patterns in one regex; matching is O(1) + one scan."""

    __slots__ = ("exact", "regex")

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        globs: list[str] = []
        for pattern in patterns:
            if any(c in pattern for c in GLOB_CHARS):
                globs.append(pattern)
            else:
                exact.add(pattern)
        self._set(exact, globs)

    @classmethod
    def of(cls, exact: Iterable[str], globs: Iterable[str]) -> PatternSet:
        """Exact values (compared as they are, `[` included) and globs, told apart already."""
        patterns = cls(())
        patterns._set(set(exact), list(globs))
        return patterns

    def _set(self, exact: set[str], globs: list[str]) -> None:
        self.exact = frozenset(exact)
        joined = "|".join(fnmatch.translate(g) for g in globs)
        self.regex = re.compile(joined) if globs else None

    def __bool__(self) -> bool:
        return bool(self.exact) or self.regex is not None

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if value in self.exact:
            return True
        return self.regex is not None and self.regex.match(value) is not None


@dataclass(frozen=True, slots=True)
class UrlGlob:
    """A URL pattern with wildcards, matched part by part: a wildcard in the host stays in the
    host (it never reaches into the path), one in the path stays in the path."""

    scheme: str
    host: str
    port: str  # "" for the scheme's default port, else the port text (digits or a glob)
    path: str

    def matches(self, payee: Payee) -> bool:
        if payee.scheme != self.scheme or payee.host is None or payee.path is None:
            return False
        if not _glob_match(self.host, payee.host) or not _glob_match(self.path, payee.path):
            return False
        if payee.port is None:
            return self.port == ""
        return self.port != "" and _glob_match(self.port, str(payee.port))


def _glob_match(pattern: str, value: str) -> bool:
    if not any(char in pattern for char in GLOB_CHARS):
        return pattern == value
    return _compiled_glob(pattern).match(value) is not None


@lru_cache(maxsize=1024)
def _compiled_glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


@dataclass(frozen=True, slots=True)
class RecipientPattern:
    """One parsed pattern. `text` is its canonical form (parsing it again gives the same).
    `glob` tells whether the match strings are globs or exact values."""

    text: str
    glob: bool = False
    url: str | None = None  # an exact URL payee text
    url_glob: UrlGlob | None = None
    host: str | None = None
    email: str | None = None
    ident: str | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    def __str__(self) -> str:
        return self.text


def parse_pattern(value: object) -> RecipientPattern:
    """Parse one policy or grant pattern, or raise `InvalidRecipientError`."""
    text = prepare(value, "recipient pattern")
    cidr = _CIDR.match(text)
    if cidr is not None:
        return _network(text)
    if not is_glob(text):
        return _exact(parse_payee(text))
    return _glob(text)


def is_glob(text: str) -> bool:
    """Whether `text` has wildcards, outside any bracketed IPv6 host."""
    return any(char in _IPV6_LITERAL.sub("", text) for char in GLOB_CHARS)


def _exact(payee: Payee) -> RecipientPattern:
    """A pattern without wildcards: it matches exactly this payee."""
    if payee.kind == "url":
        return RecipientPattern(payee.text, url=payee.text)
    if payee.kind == "email":
        return RecipientPattern(payee.text, email=payee.text)
    if payee.kind in ("domain", "ip"):
        return RecipientPattern(payee.text, host=payee.text)
    lower_bare = payee.kind != "address" and payee.text == payee.text.lower()
    return RecipientPattern(payee.text, ident=payee.text, host=payee.text if lower_bare else None)


def _network(text: str) -> RecipientPattern:
    try:
        network = ipaddress.ip_network(text.replace("[", "").replace("]", ""), strict=True)
    except ValueError as error:
        raise InvalidRecipientError(
            f"recipient pattern `{text}` is not a CIDR block: {error}"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:  # IPv4-mapped payees are canonicalised to IPv4
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return RecipientPattern(str(network), network=network)


def _glob(text: str) -> RecipientPattern:
    if "://" in text or text.startswith("//"):
        return _url_glob(text)
    if "@" in text:
        local, _, domain = text.rpartition("@")
        canonical = f"{local.casefold()}@{_glob_host(domain.rstrip('.'), text)}"
        return RecipientPattern(canonical, glob=True, email=canonical)
    if _ADDRESS_LIKE.match(text):
        canonical = text.lower()
        return RecipientPattern(canonical, glob=True, ident=canonical)
    if any(char in text for char in "/\\") or _HOST_PORT_GLOB.match(text):
        return _url_glob("https://" + text)  # `host[:port]/path` reads as an https URL
    if "." in text:
        canonical = _glob_host(text.rstrip("."), text)
        return RecipientPattern(canonical, glob=True, host=canonical)
    lower = text == text.lower()
    return RecipientPattern(text, glob=True, ident=text, host=text if lower else None)


def _url_glob(text: str) -> RecipientPattern:
    url = _URL_GLOB.match(text)
    if url is None:
        raise InvalidRecipientError(
            f"recipient pattern `{text}` has wildcards in its scheme; write http:// or https://"
        )
    scheme = (url.group(1) or "https").lower()
    if scheme not in ("http", "https"):
        raise InvalidRecipientError(
            f"recipient pattern `{text}` is a `{scheme}` URL; only http and https URLs pay"
        )
    host, port = _split_port(url.group(2), text)
    path = url.group(3).replace("\\", "/") or "/"
    if not path.startswith("/"):
        path = "/" + path  # `host?query` or `host#frag`: the payee text has no query
    path = path.split("?")[0].split("#")[0]
    if host.startswith("["):  # an IPv6 literal: its canonical form, matched exactly
        host = parse_payee(host).host or host
        host_glob = host.replace("[", "[[]")
    else:
        host = host_glob = _glob_host(host, text)
    canonical = f"{scheme}://{host}{port}{path}"
    return RecipientPattern(
        canonical, glob=True, url_glob=UrlGlob(scheme, host_glob, port[1:], path)
    )


def _split_port(authority: str, pattern: str) -> tuple[str, str]:
    if "@" in authority:
        raise InvalidRecipientError(
            f"recipient pattern `{pattern}` carries user information (`user@host`)"
        )
    if authority.startswith("["):
        host, bracket, rest = authority.partition("]")
        return host + bracket, rest
    match = _PORT.match(authority)
    assert match is not None  # the pattern matches any text
    port = match.group(2) or ""
    return match.group(1), ("" if port in (":", ":443", ":80") else port)


def _glob_host(host: str, pattern: str) -> str:
    """A host glob in canonical form: each label folded, non-ASCII labels in IDNA."""
    if not host:
        raise InvalidRecipientError(f"recipient pattern `{pattern}` has no host")
    labels = []
    for label in host.split("."):
        if any(char in label for char in GLOB_CHARS) or label.startswith("["):
            if not label.isascii():
                raise InvalidRecipientError(
                    f"recipient pattern `{pattern}` mixes wildcards and non-ASCII letters in "
                    "one label; write that label in its IDNA (xn--) form"
                )
            labels.append(label.lower())
        else:
            labels.append(_idna_label(label, pattern))
    return ".".join(labels)


def _idna_label(label: str, pattern: str) -> str:
    if label.isascii():
        return label.lower()
    converted = ada_url.idna_to_ascii(label).decode("ascii")
    if not converted:
        raise InvalidRecipientError(f"recipient pattern `{pattern}` has an invalid label")
    return converted


@dataclass(frozen=True, slots=True)
class RecipientMatcher:
    """A compiled list of patterns, matched against one payee at a time."""

    urls: frozenset[str]
    url_globs: tuple[UrlGlob, ...]
    hosts: PatternSet
    emails: PatternSet
    ids: PatternSet
    ids_folded: PatternSet
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    patterns: tuple[str, ...]

    def matches(self, payee: Payee, *, ignore_id_case: bool = False) -> bool:
        """Whether any pattern names this payee. `ignore_id_case` compares case-sensitive ids
        without case: only for conditions that can make a decision stricter, never looser."""
        kind = payee.kind
        if kind == "url" and (
            payee.text in self.urls or any(glob.matches(payee) for glob in self.url_globs)
        ):
            return True
        if kind == "email" and self.emails.matches(payee.identity):
            return True
        host = payee.host
        if host is not None:
            if self.hosts.matches(host):
                return True
            if self.networks and (kind == "ip" or _is_ip(host)):
                return _in_networks(host, self.networks)
            return False
        if self.ids.matches(payee.identity):
            return True
        return ignore_id_case and self.ids_folded.matches(payee.identity.casefold())


def compile_patterns(values: Iterable[object]) -> RecipientMatcher:
    """Parse and compile patterns; raises `InvalidRecipientError` naming the first bad one."""
    parsed = [parse_pattern(value) for value in values]
    if len(parsed) > limits.policy_patterns_per_condition_max:
        raise InvalidRecipientError(
            f"at most {limits.policy_patterns_per_condition_max} recipient patterns"
        )

    def patterns(field: str, fold: bool = False) -> PatternSet:
        exact: list[str] = []
        globs: list[str] = []
        for pattern in parsed:
            value = getattr(pattern, field)
            if value is not None:
                (globs if pattern.glob else exact).append(value.casefold() if fold else value)
        return PatternSet.of(exact, globs)

    return RecipientMatcher(
        urls=frozenset(p.url for p in parsed if p.url is not None),
        url_globs=tuple(p.url_glob for p in parsed if p.url_glob is not None),
        hosts=patterns("host"),
        emails=patterns("email"),
        ids=patterns("ident"),
        ids_folded=patterns("ident", fold=True),
        networks=tuple(p.network for p in parsed if p.network is not None),
        patterns=tuple(p.text for p in parsed),
    )


@lru_cache(maxsize=256)
def cached_matcher(patterns: tuple[str, ...]) -> RecipientMatcher:
    """`compile_patterns` for stored canonical patterns (grants), compiled once per list."""
    return compile_patterns(patterns)


def _is_ip(host: str) -> bool:
    return host.startswith("[") or host.replace(".", "").isdigit()


def _in_networks(
    host: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    address = ipaddress.ip_address(host.strip("[]"))
    return any(address in network for network in networks)
