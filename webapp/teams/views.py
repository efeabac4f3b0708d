from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from webapp.reviews.services import labels_for_team
from webapp.teams import services
from webapp.teams.forms import InvitationForm, RoleForm, SignUpForm, TeamForm
from webapp.teams.models import Invitation, Membership, Role
from webapp.teams.selectors import get_team_for_user, role_in_team, teams_for_user


@login_required
@require_http_methods(["GET", "POST"])
def team_list(request: HttpRequest) -> HttpResponse:
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        team = services.team_create(name=form.cleaned_data["name"], user=request.user)
        return redirect(team)
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
        "labels": labels_for_team(team.pk),
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
    if request.user.is_authenticated:
        if request.method == "POST":
            services.invitation_accept(token=token, user=request.user)
            return redirect(found.team)
    else:
        form = SignUpForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            user = form.save()
            services.invitation_accept(token=token, user=user)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect(found.team)
    return render(request, "teams/invitation.html", {"invitation": found, "form": form},
                  status=422 if form is not None and form.errors else 200)
