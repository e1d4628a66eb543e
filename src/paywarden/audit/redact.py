"""Scrub secrets before anything is fingerprinted or stored, and record what was removed.

The audit chain is append-only: a secret written there can never be purged. So every value
that reaches it passes through one `Redactor` first. A mapping key whose name is secret
(`password`, `apiKey`, `x-api-key`, `card_number`, ...) has its whole value replaced; any
string that contains a secret value (a card number, a provider key, a token, a PEM private
key, `password=...`) is replaced whole. The JSON-path-like paths of what was replaced
are returned so the entry can list them. docs/redaction.md is the contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from paywarden.audit.secret_formats import Found, find_value_secret, has_value_secret

REDACTED = "[redacted]"
KIND_ASSIGNMENT = "secret_assignment"
KIND_POLICY_PATTERN = "policy_pattern"
PATTERN_CHARS_MAX = 512
ENTRIES_MAX = 100
_KEY_CACHE_MAX = 4096
_URL_SCRUB_ROUNDS_MAX = 64

# Key names ------------------------------------------------------------------------------------

# A name is split into lower-case words at `_`, `-`, `.`, spaces, digits and camelCase humps:
# `X-Api-Key` and `xApiKey` are (x, api, key), `cvv2` is (cvv, 2), `APIKey` is (api, key).
_NAME_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# A name is secret when one of its words is one of these...
SECRET_WORDS = frozenset(
    {
        *("auth", "authorization", "bearer", "jwt", "token", "cookie", "cookies"),
        *("password", "passwords", "passwd", "pwd", "passphrase", "passcode", "pin"),
        *("otp", "totp", "hotp", "secret", "secrets", "credential", "credentials"),
        *("signature", "sig", "hmac", "privkey", "seed", "mnemonic", "pepper"),
        *("cvv", "cvc", "cvn", "pan", "ssn", "jsessionid", "phpsessid"),
    }
)
# ...or when consecutive words form one of these phrases, also written as one word (`apikey`).
SECRET_PHRASES = frozenset(
    {
        *("api_key", "auth_key", "private_key", "secret_key", "access_key", "signing_key"),
        *("encryption_key", "master_key", "account_key", "card_number", "card_num", "card_no"),
        *("cc_number", "cc_num", "security_code", "verification_code"),
        *("mfa_code", "pin_code", "recovery_phrase", "recovery_code", "backup_code"),
        *("seed_phrase", "pass_phrase", "social_security"),
    }
)
# A word that merely ends with one of these or with a phrase written as one word (`dbpassword`,
# `authtoken`, `oauth`, `xapikey`), or begins with one of the second set (`passwordhash`), is
# secret too. `token` and `auth` do not
# count as beginnings: `tokenizer`, `author` and `authority` are not secrets.
SECRET_ENDINGS = (
    *("password", "passwd", "pwd", "passphrase", "passcode", "secret", "secrets", "token"),
    *("credential", "credentials", "cookie", "signature", "auth"),
)
_ENDINGS = (*SECRET_ENDINGS, *sorted(phrase.replace("_", "") for phrase in SECRET_PHRASES))
SECRET_BEGINNINGS = ("password", "passwd", "pwd", "passphrase", "credential", "apikey")


def name_words(name: str) -> tuple[str, ...]:
    """The lower-case words of a key name, as the key-name rule sees them."""
    return tuple(word.lower() for word in _NAME_WORD.findall(name))


def _words_are_secret(
    words: tuple[str, ...], single: frozenset[str], phrases: frozenset[str], joined: frozenset[str]
) -> bool:
    for word in words:
        if word in single or word in joined:
            return True
        if word.endswith(_ENDINGS) or word.startswith(SECRET_BEGINNINGS):
            return True
    if len(words) > 1:
        spaced = "_" + "_".join(words) + "_"
        for phrase in phrases:
            if f"_{phrase}_" in spaced:
                return True
    return False


# Policy patterns ------------------------------------------------------------------------------

# A group that holds a quantifier and is itself repeated: `(a+)+`, `(?:\w*x)*`, `((ab)+){2,}`.
_QUANTIFIERS = frozenset("*+{")


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be a secret-value pattern, or None when it can."""
    if not isinstance(pattern, str) or not pattern:
        return "must be a non-empty string"
    if len(pattern) > PATTERN_CHARS_MAX:
        return f"is longer than {PATTERN_CHARS_MAX} characters"
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        return f"is not a valid regular expression: {error}"
    if _nested_quantifier(pattern):
        return (
            "repeats a group that already holds a quantifier, such as `(a+)+`, which can take "
            "exponential time; write it without the nesting"
        )
    if compiled.search(""):
        return "matches the empty string; a secret is at least one character"
    if compiled.search(REDACTED):
        return f"matches `{REDACTED}` itself, so redacted text would be redacted again"
    return None


def _nested_quantifier(pattern: str) -> bool:
    """True when a parenthesised group containing `*`, `+` or `{` is followed by one."""
    stack: list[bool] = []  # per open group: does it hold a quantifier so far?
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            index = _class_end(pattern, index)
            continue
        if char == "(":
            stack.append(False)
        elif char == ")" and stack:
            held = stack.pop()
            if held and pattern[index + 1 : index + 2] in _QUANTIFIERS:
                return True
            if held and stack:
                stack[-1] = True
        elif char in _QUANTIFIERS and stack:
            stack[-1] = True
        index += 1
    return False


def _class_end(pattern: str, index: int) -> int:
    """The index just after the character class `[...]` that opens at `index`."""
    index += 1
    if pattern[index : index + 1] == "^":
        index += 1
    if pattern[index : index + 1] == "]":  # a leading `]` is a literal
        index += 1
    while index < len(pattern) and pattern[index] != "]":
        index += 2 if pattern[index] == "\\" else 1
    return index + 1


# The redactor ---------------------------------------------------------------------------------

# `name=value`, `name: value`, `"name": "value"` in free text; the name decides. From each
# `=` or `:`, the name is read backwards (on the reversed text) and the value forwards, so
# prose without separators costs nothing and each separator costs two anchored matches.
_SEPARATOR = re.compile(r"[:=]")
_NAME_BACKWARDS = re.compile(r"[ \t]{0,3}([\"']?)([A-Za-z0-9_.-]{1,64})")
_VALUE_AFTER = re.compile(r"[ \t]{0,3}[\"']?([^\s\"'&;,]{1,256})")  # bounded: linear time
_URL_USERINFO = re.compile(r"//([^/?#\s]*)@")
_URL_PARAM = re.compile(r"([?&;#])([^=&;#?\s]*)=([^&;#\s]*)")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True)
class Redactor:
    """Recognises and removes secrets; the policy's `redaction:` section adds to the defaults.

    `extra_key_names` are more secret key names, matched by the same word rule as the built-in
    ones (`tax_id` matches `taxId`, `customer_tax_id` and `TAXID`, not `tax` or `syntax_id`).
    `extra_value_patterns` are Python regular expressions of more secret values.
    """

    extra_key_names: tuple[str, ...] = ()
    extra_value_patterns: tuple[str, ...] = ()
    _single: frozenset[str] = field(init=False, repr=False, compare=False)
    _phrases: frozenset[str] = field(init=False, repr=False, compare=False)
    _joined: frozenset[str] = field(init=False, repr=False, compare=False)
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _key_cache: dict[str, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        extra_words = [name_words(name) for name in self.extra_key_names]
        if not all(extra_words):
            raise ValueError("every extra key name needs at least one letter or digit")
        for pattern in self.extra_value_patterns:
            problem = pattern_problem(pattern)
            if problem is not None:
                raise ValueError(f"value pattern {pattern!r} {problem}")
        phrases = SECRET_PHRASES | {"_".join(words) for words in extra_words if len(words) > 1}
        single = SECRET_WORDS | {words[0] for words in extra_words if len(words) == 1}
        object.__setattr__(self, "_single", single)
        object.__setattr__(self, "_phrases", phrases)
        object.__setattr__(self, "_joined", frozenset(p.replace("_", "") for p in phrases))
        patterns = tuple(re.compile(pattern) for pattern in self.extra_value_patterns)
        object.__setattr__(self, "_patterns", patterns)
        object.__setattr__(self, "_key_cache", {})

    def secret_key(self, name: str) -> bool:
        """Is a value stored under this key name a secret? (See the word rule above.)"""
        known = self._key_cache.get(name)
        if known is None:
            words = name_words(name)
            known = _words_are_secret(words, self._single, self._phrases, self._joined)
            if len(self._key_cache) >= _KEY_CACHE_MAX:
                self._key_cache.clear()
            self._key_cache[name] = known
        return known

    def secret_kind(self, text: str) -> str | None:
        """The kind of the first (leftmost) secret in `text`, or None when it holds none."""
        found = self._find(text)
        return found.kind if found else None

    def redact(self, value: object, path: str = "$") -> tuple[object, list[str]]:
        """A copy of `value` with secrets replaced, and the sorted list of redacted paths.

        Mappings are copied with the whole value of a secret-named key replaced (unless it is
        None); lists and tuples are walked (and come back as lists); a string holding a secret
        is replaced whole. The input is never changed, and redacting twice changes nothing.
        """
        redacted: list[str] = []
        result = self._walk(value, path, redacted)
        return result, sorted(redacted)

    def redact_url(self, text: str) -> tuple[str, bool]:
        """`text` (a raw recipient URL) with credentials replaced, and whether any were.

        Replaced: the user information of `//user:password@`, the value of every `?`, `&`,
        `;` or `#` parameter whose name is secret or whose (percent-decoded) value holds a
        secret, then any other secret value anywhere in the text. The rest stays as written.
        """
        scrubbed = _URL_USERINFO.sub(_scrub_userinfo, text)
        scrubbed = _URL_PARAM.sub(self._scrub_param, scrubbed)
        for _ in range(_URL_SCRUB_ROUNDS_MAX):
            found = self._find(scrubbed)
            if found is None:
                return scrubbed, scrubbed != text
            scrubbed = scrubbed[: found.start] + REDACTED + scrubbed[found.end :]
        return REDACTED, True  # more secrets than any real URL holds: keep none of it

    # Internals --------------------------------------------------------------------------------

    def _walk(self, value: object, path: str, redacted: list[str]) -> object:
        if isinstance(value, str):
            if self._has_secret(value):
                redacted.append(path)
                return REDACTED
            return value
        if isinstance(value, dict):
            clean: dict[object, object] = {}
            for key, item in value.items():
                item_path = f"{path}.{key}"
                if item is not None and self.secret_key(str(key)):
                    clean[key] = REDACTED
                    redacted.append(item_path)
                else:
                    clean[key] = self._walk(item, item_path, redacted)
            return clean
        if isinstance(value, list | tuple):
            return [
                self._walk(item, f"{path}[{index}]", redacted) for index, item in enumerate(value)
            ]
        return value

    def _has_secret(self, text: str) -> bool:
        if has_value_secret(text):
            return True
        if ("=" in text or ":" in text) and self._find_assignment(text) is not None:
            return True
        return bool(self._patterns) and self._find_pattern(text) is not None

    def _find(self, text: str) -> Found | None:
        first: Found | None = None
        for found in (
            find_value_secret(text),
            self._find_assignment(text),
            self._find_pattern(text),
        ):
            if found is not None and (first is None or found.start < first.start):
                first = found
        return first

    def _find_assignment(self, text: str) -> Found | None:
        """`password=hunter2`, `"api_key": "..."`, `PIN: 1234`: a secret name given a value.

        After `=`, or `:` after a quoted name, any value counts. After a bare `:`, which prose
        uses too ("Signature: pending"), the value must be 12 characters long, or 4 with at
        least one character that is not a letter.
        """
        backwards = ""
        for separator in _SEPARATOR.finditer(text):
            at = separator.start()
            backwards = backwards or text[::-1]
            name = _NAME_BACKWARDS.match(backwards, len(text) - at)
            value = _VALUE_AFTER.match(text, at + 1)
            if name is None or value is None or value.group(1).startswith(REDACTED):
                continue
            prose_colon = separator.group() == ":" and not name.group(1)  # a quoted name is data
            if prose_colon and not _plausible_after_colon(value.group(1)):
                continue
            if self.secret_key(name.group(2)[::-1]):
                return Found(KIND_ASSIGNMENT, value.start(1), value.end(1))
        return None

    def _find_pattern(self, text: str) -> Found | None:
        first: Found | None = None
        for pattern in self._patterns:
            for match in pattern.finditer(text):
                if match.end() > match.start():
                    if first is None or match.start() < first.start:
                        first = Found(KIND_POLICY_PATTERN, match.start(), match.end())
                    break
        return first

    def _scrub_param(self, match: re.Match[str]) -> str:
        separator, name, value = match.groups()
        if not value or value == REDACTED:
            return match.group(0)
        if self.secret_key(_percent_decode(name)) or self._has_secret(_percent_decode(value)):
            return f"{separator}{name}={REDACTED}"
        return match.group(0)


def _plausible_after_colon(value: str) -> bool:
    return len(value) >= 12 or (len(value) >= 4 and not value.isalpha())


def _scrub_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group(1)
    return match.group(0) if userinfo in ("", REDACTED) else f"//{REDACTED}@"


def _percent_decode(text: str) -> str:
    """`+` and `%XX` decoded for recognising a secret only; the URL text is never rewritten."""
    if "%" not in text and "+" not in text:
        return text
    return _PERCENT.sub(lambda match: chr(int(match.group(1), 16)), text.replace("+", " "))


DEFAULT_REDACTOR = Redactor()


def redact(value: object, path: str = "$") -> tuple[object, list[str]]:
    """A copy of `value` with secrets replaced, and the sorted list of redacted paths."""
    return DEFAULT_REDACTOR.redact(value, path)
