"""`mlopen user create|token|role`: acts on the database the environment configures."""

from __future__ import annotations

import getpass
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import ValidationError, validate_password
from django.db import transaction
from rest_framework.authtoken.models import Token

from mlopen.core.roles import set_role


def _fail(message: str) -> int:
    print(f"mlopen user: {message}", file=sys.stderr)
    return 1


def run_user_command(args) -> int:
    User = get_user_model()
    if args.user_command == "create":
        if User.objects.filter(username=args.name).exists():
            return _fail(f"user {args.name!r} already exists")
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                return _fail("--password-stdin was given but standard input held no password")
        elif sys.stdin.isatty():
            password = getpass.getpass(f"Password for {args.name}: ")
        else:
            password = None
        if password:
            try:
                validate_password(password)
            except ValidationError as exc:
                return _fail(" ".join(exc.messages))
        with transaction.atomic():
            user = User.objects.create_user(username=args.name, email=args.email, password=password or None)
            if not password:
                user.set_unusable_password()
                user.save(update_fields=["password"])
            set_role(user, args.role)
        print(f"created {args.role} {args.name}")
        return 0
    user = User.objects.filter(username=args.name).first()
    if user is None:
        return _fail(f"no user named {args.name!r}")
    if args.user_command == "token":
        token, _ = Token.objects.get_or_create(user=user)
        print(token.key)
        return 0
    if args.user_command == "role":
        set_role(user, args.role)
        print(f"{args.name} is now {args.role}")
        return 0
    return 2
