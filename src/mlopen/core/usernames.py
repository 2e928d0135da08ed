"""Username rules: one spelling per name, and no look-alike of a name that exists.

A new name is NFKC-normalized (full-width ``ａｄｍｉｎ`` is ``admin``) and must differ from every existing
name once both are reduced to a skeleton: case folded, and each character that only looks like a
Latin letter (Cyrillic ``а``, Greek ``ο``, ...) replaced by that letter (the Unicode confusables data,
through confusable-homoglyphs). So with ``admin`` taken, ``Admin``, ``ADMIN`` and ``аdmin`` are refused.
The check runs wherever a user is created: ``mlopen user create``, the admin's user form, the API.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from confusable_homoglyphs import categories, confusables
from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError

MAX_LENGTH = 150


@lru_cache(maxsize=4096)
def _latin_lookalike(char: str) -> str:
    if char.isascii() or categories.alias(char) in ("LATIN", "COMMON"):
        return char
    found = confusables.is_confusable(char, preferred_aliases=["latin"], greedy=False)
    if found:
        for glyph in found[0]["homoglyphs"]:
            if glyph["c"].isascii():
                return glyph["c"].casefold()
    return char


@lru_cache(maxsize=4096)
def skeleton(name: str) -> str:
    """What ``name`` looks like: two names with one skeleton are too alike to tell apart."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(_latin_lookalike(char) for char in folded)


def normalize(name) -> str:
    return unicodedata.normalize("NFKC", name if isinstance(name, str) else "").strip()


def clean_new_username(raw, exclude_pk: int | None = None) -> str:
    """The name to store for a new user, or ValidationError with a message a person can act on."""
    name = normalize(raw)
    if not name:
        raise ValidationError("A username cannot be empty.")
    if len(name) > MAX_LENGTH:
        raise ValidationError(f"A username has at most {MAX_LENGTH} characters.")
    UnicodeUsernameValidator()(name)
    wanted = skeleton(name)
    others = get_user_model().objects.exclude(pk=exclude_pk).values_list("username", flat=True)
    for other in others.iterator():
        if other == name:
            raise ValidationError(f"The username {name!r} is taken.")
        if skeleton(other) == wanted:
            raise ValidationError(f"The username {name!r} looks too much like the existing user {other!r}.")
    return name
