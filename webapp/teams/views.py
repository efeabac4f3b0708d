from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from webapp.teams import services
from webapp.teams.forms import InvitationForm, PasswordLinkForm, RoleForm, SignUpForm, TeamForm
from webapp.teams.models import Invitation, Membership, Role
from webapp.teams.selectors import get_team_for_user, role_in_team, teams_for_user


@login_required
@require_http_methods(["GET", "POST"])
def team_list(request: HttpRequest) -> HttpResponse:
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = services.team_create(name=form.cleaned_data["name"], user=request.user)
            return redirect(team)
        except ValidationError as exc:
            form.add_error("name", exc)
    teams = teams_for_user(request.user).prefetch_related("memberships")
    roles = dict(Membership.objects.filter(user=request.user).values_list("team_id", "role"))
    rows = [(team, roles.get(team.pk)) for team in teams]
    return render(request, "teams/team_list.html", {"rows": rows, "form": form},
                  status=422 if form.errors else 200)


@login_required
def team_detail(request: HttpRequest, team_id: int) -> HttpResponse:
    team = get_team_for_user(request.user, team_id)
    role = role_in_team(request.user, team.pk)
    context = {
        "team": team, "role": role, "is_admin": role == Role.ADMIN,
        "memberships": team.memberships.select_related("user"),
        "projects": team.projects.all(),
        "invitations": [i for i in team.invitations.select_related("invited_by") if i.is_open],
        "invite_form": InvitationForm(), "roles": Role.choices,
    }
    return render(request, "teams/team_detail.html", context)


@login_required
@require_POST
def team_invite(request: HttpRequest, team_id: int) -> HttpResponse:
    team = get_team_for_user(request.user, team_id, Role.ADMIN)
    form = InvitationForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a valid email address and role for the invitation.")
        return redirect(team)
    _, token = services.invitation_create(team=team, actor=request.user,
                                          email=form.cleaned_data["email"],
                                          role=form.cleaned_data["role"])
    link = request.build_absolute_uri(reverse("teams:invitation", args=[token]))
    messages.success(request, f"Invitation link (shown once, valid for "
                              f"{services.INVITATION_DAYS} days): {link}")
    return redirect(team)


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, team_id: int, invitation_id: int) -> HttpResponse:
    team = get_team_for_user(request.user, team_id, Role.ADMIN)
    invitation = get_object_or_404(Invitation, pk=invitation_id, team=team)
    services.invitation_revoke(team=team, actor=request.user, invitation=invitation)
    return redirect(team)


@login_required
@require_POST
def member_role(request: HttpRequest, team_id: int, membership_id: int) -> HttpResponse:
    team = get_team_for_user(request.user, team_id, Role.ADMIN)
    membership = get_object_or_404(Membership, pk=membership_id, team=team)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            services.membership_set_role(team=team, actor=request.user, membership=membership,
                                         role=form.cleaned_data["role"])
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
    return redirect(team)


@login_required
@require_POST
def member_remove(request: HttpRequest, team_id: int, membership_id: int) -> HttpResponse:
    team = get_team_for_user(request.user, team_id, Role.ADMIN)
    membership = get_object_or_404(Membership, pk=membership_id, team=team)
    try:
        services.membership_remove(team=team, actor=request.user, membership=membership)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect(team)


@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """Accept an invitation: signed-in users with one click, others by creating an account."""
    found = services.invitation_find(token=token)
    if found is None:
        return render(request, "teams/invitation.html", {"invalid": True}, status=404)
    form = None
    error = None
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                services.invitation_accept(token=token, user=request.user)
                return redirect(found.team)
            except ValidationError as exc:  # used by someone else meanwhile
                error = " ".join(exc.messages)
    else:
        form = SignUpForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                membership = services.invitation_sign_up(
                    token=token, username=form.cleaned_data["username"],
                    password=form.cleaned_data["password1"],
                    email=form.cleaned_data.get("email", ""))
                login(request, membership.user,
                      backend="django.contrib.auth.backends.ModelBackend")
                return redirect(found.team)
            except ValidationError as exc:
                form.add_error(None, exc)
    return render(request, "teams/invitation.html",
                  {"invitation": found, "form": form, "error": error},
                  status=422 if error or (form is not None and form.errors) else 200)


@require_http_methods(["GET", "POST"])
def password_reset(request: HttpRequest) -> HttpResponse:
    """Django's reset by email, where this server sends mail (EMAIL_HOST); elsewhere there is no
    such page, and an administrator makes the link instead (password_links)."""
    if not settings.RLAB_PASSWORD_RESET_BY_EMAIL:
        raise Http404("Password reset by email needs a mail server (EMAIL_HOST).")
    return auth_views.PasswordResetView.as_view()(request)


@login_required
@require_http_methods(["GET", "POST"])
def password_links(request: HttpRequest) -> HttpResponse:
    """Staff make a one-time link where a user sets a new password, to pass on themselves."""
    if not request.user.is_staff:
        raise Http404
    form = PasswordLinkForm(request.POST or None)
    link = None
    if request.method == "POST" and form.is_valid():
        try:
            link = services.password_reset_link(username=form.cleaned_data["username"],
                                                base_url=request.build_absolute_uri("/"))
        except ValidationError as exc:
            form.add_error("username", exc)
    return render(request, "registration/password_links.html", {"form": form, "link": link},
                  status=422 if form.errors else 200)
