"""`mlopen user create|token|role`: acts on the database the environment configures."""

from __future__ import annotations

import getpass
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import ValidationError, validate_password
from django.db import IntegrityError, transaction

from mlopen.core import tokens
from mlopen.core.roles import set_role
from mlopen.core.usernames import clean_new_username, normalize


def _fail(message: str) -> int:
    print(f"mlopen user: {message}", file=sys.stderr)
    return 1


def run_user_command(args) -> int:
    User = get_user_model()
    if args.user_command == "create":
        try:
            name = clean_new_username(args.name)
        except ValidationError as exc:
            return _fail(" ".join(exc.messages))
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                return _fail("--password-stdin was given but standard input held no password")
        elif sys.stdin.isatty():
            password = getpass.getpass(f"Password for {name}: ")
        else:
            password = None
        if password:
            try:
                validate_password(password)
            except ValidationError as exc:
                return _fail(" ".join(exc.messages))
        try:
            with transaction.atomic():
                user = User.objects.create_user(username=name, email=args.email, password=password or None)
                if not password:
                    user.set_unusable_password()
                    user.save(update_fields=["password"])
                set_role(user, args.role)
        except IntegrityError:  # created by someone else between the check and now
            return _fail(f"the username {name!r} is taken")
        print(f"created {args.role} {name}")
        return 0
    user = User.objects.filter(username=normalize(args.name)).first()
    if user is None:
        return _fail(f"no user named {args.name!r}")
    if args.user_command == "token":
        # A new token each time: the ones made before are stored hashed and cannot be shown again.
        try:
            _, raw = tokens.create_token(user, args.token_name, expires_at=tokens.expiry_in(args.expires_in_days))
        except tokens.TokenRequestInvalid as exc:
            return _fail(str(exc))
        print(raw)
        return 0
    if args.user_command == "role":
        set_role(user, args.role)
        print(f"{args.name} is now {args.role}")
        return 0
    return 2
