"""A ticket's language: a BCP 47 language tag (RFC 5646), well-formed, kept in the case
the RFC recommends (language lower, script title, region upper, the rest lower), so that
rules comparing `ticket.language` with "zh-Hant-TW" hold whatever case a platform sent.

Well-formed, not looked up: the tag's grammar (RFC 5646 section 2.1) is checked, not
whether the IANA registry holds its subtags today, which would refuse tomorrow's. The
grandfathered tags ("i-klingon", "en-GB-oed") and a tag of private use alone ("x-...")
are not taken. The same pattern is the OpenAPI's, so clients and fuzzers know it."""

from __future__ import annotations

import re

# RFC 5646 section 4.4.1 asks room for at least 35 characters (a tag without extensions);
# with them, longer ones are well-formed too.
MAX_LENGTH = 64
_ALPHA, _DIGIT, _ALNUM = "[A-Za-z]", "[0-9]", "[A-Za-z0-9]"
_TAG = (f"{_ALPHA}{{2,3}}(?:-{_ALPHA}{{3}}){{0,3}}"  # language, extended language subtags
        f"(?:-{_ALPHA}{{4}})?"  # script
        f"(?:-(?:{_ALPHA}{{2}}|{_DIGIT}{{3}}))?"  # region
        f"(?:-(?:{_ALNUM}{{5,8}}|{_DIGIT}{_ALNUM}{{3}}))*"  # variants
        f"(?:-[0-9A-WYZa-wyz](?:-{_ALNUM}{{2,8}})+)*"  # extensions
        f"(?:-[Xx](?:-{_ALNUM}{{1,8}})+)?")  # private use
PATTERN = f"^{_TAG}$"
_WELL_FORMED = re.compile(_TAG)
# What the intake took before (a language, then one subtag of 2 to 8 letters or digits):
# the stages still read a ticket recorded with one that is no BCP 47 tag ("en-12").
_TAKEN_BEFORE = "[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})?"
RECORDED_PATTERN = f"^(?:{_TAG}|{_TAKEN_BEFORE})$"
_RECORDED = re.compile(RECORDED_PATTERN)

ACCEPTED = ("a language of 2 or 3 letters, then, each after a hyphen, optionally a script"
            " (4 letters), a region (2 letters or 3 digits), variants, extensions and a"
            f" private-use part; any case, at most {MAX_LENGTH} characters: e.g. 'en',"
            " 'nl-BE', 'zh-Hant-TW', 'es-419'")
DESCRIPTION = (f"BCP 47 language tag (RFC 5646), any case, at most {MAX_LENGTH} characters,"
               " e.g. 'en', 'nl-BE', 'zh-Hant-TW'; kept in the case BCP 47 recommends"
               " (language lower, script title, region upper: 'ZH-hant-tw' is 'zh-Hant-TW')")


def canonical(tag: str) -> str:
    """A well-formed tag in BCP 47's case: the language lower case, a script (4
    letters) title case, a region (2 letters) upper case, the rest lower case (from a
    singleton on, every subtag: `en-a-bb` keeps `bb`)."""
    language, *rest = tag.split("-")
    parts = [language.lower()]
    extended = False
    for subtag in rest:
        if extended or len(subtag) == 1:
            extended = True
            parts.append(subtag.lower())
        elif len(subtag) == 2:
            parts.append(subtag.upper())
        elif len(subtag) == 4 and subtag[0].isalpha():
            parts.append(subtag.capitalize())
        else:
            parts.append(subtag.lower())
    return "-".join(parts)


def language_tag(value: str) -> str:
    """A tag a platform sends: well-formed, in its canonical case; else ValueError saying
    what is accepted (a tag written with underscores, `pt_BR`, is told its hyphens)."""
    if len(value) <= MAX_LENGTH and _WELL_FORMED.fullmatch(value):
        return canonical(value)
    raise ValueError(problem(value))


def recorded_language(value: str) -> str:
    """A ticket record's language: a tag as `language_tag` takes it, or as the intake
    took one before, kept as it was."""
    if len(value) <= MAX_LENGTH and _WELL_FORMED.fullmatch(value):
        return canonical(value)
    if _RECORDED.fullmatch(value):
        return value
    raise ValueError(problem(value))


def problem(value: str) -> str:
    if len(value) > MAX_LENGTH:
        return f"at most {MAX_LENGTH} characters, not {len(value)}: {ACCEPTED}"
    hyphened = value.replace("_", "-")
    if hyphened != value and _WELL_FORMED.fullmatch(hyphened):
        # Not the tag itself: a record's language reaches logs and dead-letter headers
        # (faults.reason), and text shaped so ("Doe_Jane_1980") may be a person's name.
        return ("a language tag's parts are joined by hyphens, not underscores (e.g."
                " 'pt-BR', not 'pt_BR')")
    return f"not a well-formed BCP 47 language tag: send {ACCEPTED}"
