"""Teams: sign-up, teams, members and their roles, invitations, and password links."""
