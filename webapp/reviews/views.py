from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.projects.selectors import get_project_for_user
from webapp.reviews import selectors, services
from webapp.reviews.forms import (
    AnnotationForm,
    CommentForm,
    LabelForm,
    NotesForm,
    ReviewFilterForm,
    TagForm,
)
from webapp.reviews.models import Annotation, Comment
from webapp.rollouts.tokens import token_view
from webapp.runs.models import Rollout, Run
from webapp.runs.selectors import get_run_for_user, runs_for_user
from webapp.teams.models import Role
from webapp.teams.selectors import get_team_for_user, require_role, user_has_role


def run_review_context(run: Run, user) -> dict:
    """What the run page's review parts show: star, tags, notes and comments (templates/reviews/
    _run_review.html, through the reviews tags on the run page, and after a change here)."""
    return {
        "run": run,
        "starred": run.stars.filter(user=user).exists(),
        "star_count": run.stars.count(),
        "tags": list(run.tags.all()),
        "comments": list(run.comments.select_related("author")),
        "comment_form": CommentForm(),
        "tag_form": TagForm(),
        "notes_form": NotesForm(initial={"notes": run.notes}),
    }


def _review_response(request: HttpRequest, run: Run, partial: str) -> HttpResponse:
    if request.htmx:
        run.refresh_from_db()
        can_edit = user_has_role(request.user, run.experiment.project.team_id, Role.MEMBER)
        return render(request, f"reviews/_run_review.html#{partial}",
                      {**run_review_context(run, request.user), "can_edit": can_edit})
    return redirect(run)


def _error(request: HttpRequest, exc: ValidationError) -> None:
    messages.error(request, " ".join(exc.messages))


@login_required
@require_POST
def comment_create(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_run_for_user(request.user, run_id, Role.VIEWER)
    form = CommentForm(request.POST)
    if form.is_valid():
        try:
            services.comment_create(run=run, author=request.user, body=form.cleaned_data["body"])
        except ValidationError as exc:
            _error(request, exc)
    return _review_response(request, run, "comments")


@login_required
@require_POST
def comment_delete(request: HttpRequest, comment_id: int) -> HttpResponse:
    comment = get_object_or_404(Comment, pk=comment_id)
    run = get_run_for_user(request.user, comment.run_id, Role.VIEWER)
    services.comment_delete(comment=comment, actor=request.user)
    return _review_response(request, run, "comments")


@login_required
@require_POST
def run_star(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_run_for_user(request.user, run_id, Role.VIEWER)
    services.run_star_toggle(run=run, user=request.user)
    return _review_response(request, run, "review-bar")


@login_required
@require_POST
def run_tag_add(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_run_for_user(request.user, run_id, Role.MEMBER)
    form = TagForm(request.POST)
    if form.is_valid():
        try:
            services.run_tag_add(run=run, actor=request.user, name=form.cleaned_data["name"])
        except ValidationError as exc:
            _error(request, exc)
    return _review_response(request, run, "review-bar")


@login_required
@require_POST
def run_tag_remove(request: HttpRequest, run_id: int, tag_id: int) -> HttpResponse:
    run = get_run_for_user(request.user, run_id, Role.MEMBER)
    services.run_tag_remove(run=run, tag_id=tag_id)
    return _review_response(request, run, "review-bar")


@login_required
@require_POST
def run_notes(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_run_for_user(request.user, run_id, Role.MEMBER)
    form = NotesForm(request.POST)
    if form.is_valid():
        services.run_notes_set(run=run, actor=request.user, notes=form.cleaned_data["notes"])
    return _review_response(request, run, "review-bar")


def _get_rollout_for_user(user, rollout_id: int, role: str = Role.VIEWER) -> Rollout:
    rollout = get_object_or_404(
        Rollout.objects.filter(run__in=runs_for_user(user))
        .select_related("run__experiment__project"), pk=rollout_id)
    require_role(user, rollout.run.experiment.project.team_id, role)
    return rollout


def _rollout_context(rollout: Rollout, user, form: AnnotationForm | None = None,
                     colour: str | None = None) -> dict:
    """The rollout page; `colour` is the token view's quantity (log-prob when not given)."""
    labels = services.labels_for_team(rollout.run.experiment.project.team_id)
    return {
        "rollout": rollout, "run": rollout.run, "experiment": rollout.run.experiment,
        "project": rollout.run.experiment.project,
        "annotations": rollout.annotations.select_related("author"),
        "annotation_form": form or AnnotationForm(labels=labels),
        "group": rollout.run.rollouts.filter(step=rollout.step, group=rollout.group)
        .order_by("sample_index"),
        "token_view": token_view(rollout.token_data, colour),
    }


@login_required
@require_GET
def rollout_detail(request: HttpRequest, rollout_id: int) -> HttpResponse:
    rollout = _get_rollout_for_user(request.user, rollout_id)
    return render(request, "reviews/rollout_detail.html",
                  _rollout_context(rollout, request.user, colour=request.GET.get("colour")))


@login_required
@require_POST
def annotation_create(request: HttpRequest, rollout_id: int) -> HttpResponse:
    rollout = _get_rollout_for_user(request.user, rollout_id)
    labels = services.labels_for_team(rollout.run.experiment.project.team_id)
    form = AnnotationForm(request.POST, labels=labels)
    if form.is_valid():
        try:
            services.annotation_create(rollout=rollout, author=request.user,
                                       label=form.cleaned_data["label"],
                                       note=form.cleaned_data["note"])
            form = None
        except ValidationError as exc:
            form.add_error(None, exc)
    context = _rollout_context(rollout, request.user, form)
    status = 422 if form is not None else 200
    if request.htmx:
        return render(request, "reviews/rollout_detail.html#annotations", context, status=status)
    if form is not None:
        return render(request, "reviews/rollout_detail.html", context, status=status)
    return redirect("reviews:rollout", rollout.pk)


@login_required
@require_POST
def annotation_delete(request: HttpRequest, annotation_id: int) -> HttpResponse:
    annotation = get_object_or_404(Annotation, pk=annotation_id)
    rollout = _get_rollout_for_user(request.user, annotation.rollout_id)
    services.annotation_delete(annotation=annotation, actor=request.user)
    if request.htmx:
        return render(request, "reviews/rollout_detail.html#annotations",
                      _rollout_context(rollout, request.user))
    return redirect("reviews:rollout", rollout.pk)


@login_required
@require_GET
def project_review(request: HttpRequest, project_id: int) -> HttpResponse:
    """Annotated rollouts of a project, filtered by label, run and author."""
    project = get_project_for_user(request.user, project_id)
    everything = selectors.annotations_for_project(project)
    runs = Run.objects.filter(experiment__project=project).select_related("experiment")
    authors = get_user_model().objects.filter(
        pk__in=everything.values_list("author_id", flat=True)).order_by("username")
    form = ReviewFilterForm(request.GET or None, labels=services.labels_for_team(project.team_id),
                            runs=runs, authors=authors)
    filters = form.cleaned_data if form.is_valid() else {}
    annotations = selectors.annotations_for_project(
        project, label=filters.get("label", ""), run_id=int(filters.get("run") or 0) or None,
        author_id=int(filters.get("author") or 0) or None)[:500]
    template = "reviews/project_review.html"
    if request.htmx:
        template += "#annotation-list"
    return render(request, template, {"project": project, "form": form,
                                      "annotations": annotations})


@login_required
@require_GET
def project_activity(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request.user, project_id)
    return render(request, "reviews/project_activity.html",
                  {"project": project, "activities": selectors.activity_for_project(project)})


@login_required
@require_POST
def label_create(request: HttpRequest, team_id: int) -> HttpResponse:
    team = get_team_for_user(request.user, team_id, Role.ADMIN)
    form = LabelForm(request.POST)
    if form.is_valid():
        try:
            services.label_create(team=team, name=form.cleaned_data["name"])
        except ValidationError as exc:
            _error(request, exc)
    return redirect(team)
