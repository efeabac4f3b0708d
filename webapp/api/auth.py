"""How API requests authenticate: a bearer token (webapp.api.tokens), or the browser's session
for the interactive docs (with Django's CSRF check on writes)."""

from __future__ import annotations

from ninja.security import HttpBearer, django_auth

from webapp.api.tokens import token_user


class TokenAuth(HttpBearer):
    def authenticate(self, request, token: str):
        user = token_user(token)
        if user is not None:
            request.user = user  # the views read request.user, whichever way it signed in
        return user


API_AUTH = [TokenAuth(), django_auth]
