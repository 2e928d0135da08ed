from django.urls import include, path, re_path
from rest_framework.routers import DefaultRouter

from mlopen.api import notification_views, pipeline_files, registry, tokens, views
from mlopen.api.permissions import ApiRootView

router = DefaultRouter()
router.APIRootView = ApiRootView  # declares its permission like every other API view
# No /runs/7/logs.json-style routes: the custom actions took no `format` argument and answered
# 500 there; ?format= (or the Accept header) chooses the format instead.
router.include_format_suffixes = False
router.register("pipelines", views.PipelineViewSet, basename="pipeline")
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("runs", views.RunViewSet, basename="run")
router.register("webhooks", views.WebhookViewSet, basename="webhook")
router.register("me/tokens", tokens.TokenViewSet, basename="token")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="api-me"),
    path("me/notifications/", notification_views.NotificationPreferencesView.as_view(), name="api-notifications"),
    path(
        "me/notifications/pipelines/<id:pipeline_id>/",
        notification_views.NotificationOverrideView.as_view(),
        name="api-notification-override",
    ),
    path(
        "pipelines/<id:pk>/versions/<id:number>/files/",
        pipeline_files.VersionFilesView.as_view(),
        name="pipeline-version-files",
    ),
    path(
        "pipelines/<id:pk>/versions/<id:number>/files/<path:path>",
        pipeline_files.VersionFileView.as_view(),
        name="pipeline-version-file",
    ),
    path("pipelines/<id:pk>/models/<id:model_id>/", registry.ModelDetailView.as_view(), name="pipeline-model-detail"),
    path(
        "pipelines/<id:pk>/models/<id:model_id>/runs/",
        registry.ModelRunsView.as_view(),
        name="pipeline-model-runs",
    ),
    path(
        "pipelines/<id:pk>/models/<id:model_id>/download/",
        registry.ModelDownloadView.as_view(),
        name="pipeline-model-download",
    ),
    path("", include(router.urls)),
    # Last: anything else under /api/v1/ is a JSON 404, not the site's HTML page. DOTALL and \Z
    # because a path may hold a percent-encoded newline, which a plain ".*$" does not match.
    re_path(r"^(?P<path>(?s:.*))\Z", views.not_found),
]
