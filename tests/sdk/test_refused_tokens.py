"""What the SDK and the CLI say when the server refuses their token (mistyped, revoked): that
the token is invalid or revoked, never that a role is too low; against the real web server."""

from __future__ import annotations

import pytest

import rlab
from rlab.cli import main
from rlab.client import Rejected
from webapp.api.tokens import token_create, token_revoke

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=["mistyped", "revoked"])
def refused_token(request, user) -> str:
    row, token = token_create(user=user, name="ci")
    if request.param == "revoked":
        token_revoke(token=row)
        return token
    return token[:-2] + ("xy" if not token.endswith("xy") else "yz")


def test_init_says_the_token_is_invalid_or_revoked(server, project, refused_token, tmp_path):
    with pytest.raises(rlab.RlabError) as raised:
        rlab.init(project=project.pk, experiment="script", url=server, token=refused_token,
                  spool_dir=tmp_path, init_timeout=5)
    message = str(raised.value)
    assert "invalid or revoked token" in message.lower()
    assert "role" not in message
    assert not project.experiments.exists()


def test_the_cli_says_the_token_is_invalid_or_revoked(server, project, refused_token, capsys):
    status = main(["runs", "--url", server, "--token", refused_token])
    err = capsys.readouterr().err
    assert status == 1
    assert "invalid or revoked token" in err.lower() and "HTTP 401" in err


def test_a_401_from_anyone_else_says_so_too():
    """A proxy in front of rlab answers 401 in its own words."""
    assert "invalid or revoked token" in str(Rejected(401, "Unauthorized"))
    assert str(Rejected(403, "This needs the member role in the team.")).endswith("team.")
