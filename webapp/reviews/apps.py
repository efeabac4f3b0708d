from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "webapp.reviews"
    label = "reviews"

    def ready(self) -> None:
        # What the apps below this one did in a project (launches, cancels) goes to its feed.
        from webapp.projects.activity import activity
        from webapp.reviews.services import activity_record_announced

        activity.connect(activity_record_announced, dispatch_uid="reviews.activity")
